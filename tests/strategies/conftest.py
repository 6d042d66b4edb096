"""Fixtures of the strategy tests."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory) -> str:
    """test_resnet "pretrained" weights with every BatchNorm scale at ~1: timm zero-initialises the last
    BatchNorm of each block, which would stop gradients into the layers before it, so that some of a
    strategy's parameters could not change in a short run and the exact-set checks could not fail."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.1)
            torch.nn.init.normal_(m.bias, 0.0, 0.1)
    path = tmp_path_factory.mktemp("weights") / "test_resnet.safetensors"
    save_file(net.state_dict(), str(path))
    return str(path)
