"""Any timm backbone: a representative of each architecture family (random weights, small inputs) builds with
a head sized from what its pooled output really is, trains a step, tests, and exports merged to plain timm
with the same logits. MobileNetV3 and GhostNet pool into a conv head of their own (`head_hidden_size`
1,024 / 1,280, not `num_features` 576 / 960): a head sized from `num_features` crashed at the first step."""
from __future__ import annotations

import functools

import pytest
import timm
import torch

from cifar_ft.backbones import feature_width
from cifar_ft.exports.timm_form import ExportInfo, to_timm, write_timm
from cifar_ft.models.factory import build_classifier

SLOW = pytest.mark.slow  # the heavier families: the slow tier (a few seconds each on 2 cores)
FAMILIES = [  # (timm name, input size): CNNs with a conv head, plain CNNs, ViTs with and without a class
    ("mobilenetv3_small_100", 32), ("ghostnet_100", 32),  # token, distilled, hierarchical and hybrid models
    ("resnet18", 32), ("deit_tiny_distilled_patch16_224", 32),
    *[pytest.param(n, s, marks=SLOW) for n, s in [
        ("efficientnet_b0", 32), ("regnetx_002", 32), ("convnext_atto", 32), ("vit_tiny_patch16_224", 32),
        ("vit_little_patch16_reg1_gap_256", 32), ("swin_tiny_patch4_window7_224", 32), ("maxvit_nano_rw_256", 64)]],
]


@pytest.mark.parametrize("name,size", FAMILIES)
def test_each_family_trains_tests_and_exports(name, size, tmp_path):
    torch.manual_seed(0)
    model = build_classifier(backbone=name, num_classes=3, pretrained=False, input_size=size, channels_last=False,
                            optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    x, y = torch.randn(4, 3, size, size), torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        assert model.backbone(x).shape == (4, feature_width(model.backbone)) == (4, model.head.in_features)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    before = model.head.weight.detach().clone()
    logits, loss = model._logits_and_loss(x, y)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, model.head.weight)
    model.eval()
    with torch.no_grad():
        ours = model(x)
        net = to_timm(model)
        assert torch.allclose(net(x), ours, atol=1e-4)
    info = ExportInfo(class_names=["a", "b", "c"], input_size=size, mean=[0.5] * 3, std=[0.5] * 3, eval_crop_pct=1.0,
                      model_card="card")
    write_timm(net, tmp_path, info)
    reloaded = timm.create_model(f"local-dir:{tmp_path}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(x), ours, atol=1e-4)
