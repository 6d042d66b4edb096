"""The backbone registry: headless timm and torchvision models, layer groups, local weights files."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cifar_ft.backbones import create_backbone, layer_groups
from cifar_ft.backbones.weights import load_into
from cifar_ft.errors import ConfigError


def test_unknown_backbone_names_close_matches():
    with pytest.raises(ConfigError, match=r"model.backbone='resnet181'.*Did you mean:.*resnet18"):
        create_backbone("resnet181", pretrained=False)


def test_torchvision_resnet_is_headless_and_grouped():
    bb = create_backbone("resnet18", pretrained=False, source="torchvision")
    assert bb.num_features == 512 and isinstance(bb.fc, torch.nn.Identity)
    groups = layer_groups(bb)
    assert groups[0][0] == "conv1.weight" and groups[-1][0].startswith("layer4.1")
    assert sum(len(g) for g in groups) == len(list(bb.parameters()))


def test_vit_and_resnet_groups_come_from_timm_matcher():
    vit = create_backbone("vit_tiny_patch16_224", pretrained=False)
    groups = layer_groups(vit)
    assert len(groups) == 13  # stem + 12 blocks; the final norm joins the last block
    assert sum(len(g) for g in groups) == len(list(vit.parameters()))
    assert "pos_embed" in groups[0] and "norm.weight" in groups[-1]
    with pytest.raises(ConfigError, match="pattern 'nomatch' matches no backbone parameter"):
        layer_groups(vit, ["^blocks", "nomatch"])


def test_weights_file_roundtrip_and_shape_mismatch(tmp_path: Path):
    src = create_backbone("test_resnet", pretrained=False)
    path = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, path)
    dst = create_backbone("test_resnet", pretrained=str(path))
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k
    bad = dict(src.state_dict())
    key = next(k for k, v in bad.items() if v.ndim == 4)
    bad[key] = torch.zeros(1, 1, 1, 1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(ConfigError, match=rf"bad.pth.*{key}.*\(1, 1, 1, 1\).*expects"):
        load_into(create_backbone("test_resnet", pretrained=False), tmp_path / "bad.pth")


def test_missing_weights_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="no such weights file"):
        create_backbone("test_resnet", pretrained=str(tmp_path / "nope.pth"))
