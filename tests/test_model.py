"""Backbone factory, head replacement, parameter groups, schedules, weights loading, model configs."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir

from cifar_ft.backbones import create_backbone, layer_groups
from cifar_ft.errors import ConfigError
from cifar_ft.module import ImageClassifier
from cifar_ft.optim import PlateauSchedule, WarmupSchedule
from cifar_ft.weights import load_into
from tests.conftest import CONF_DIR

ADAMW = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)


def tiny(num_classes=10, **kw) -> ImageClassifier:
    return ImageClassifier("test_resnet", num_classes, pretrained=False, input_size=32, optimizer=ADAMW, **kw)


@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_head_is_one_fresh_linear(num_classes):
    model = tiny(num_classes)
    assert isinstance(model.head, torch.nn.Linear)
    assert model.head.in_features == model.backbone.num_features == 96
    assert model.head.out_features == num_classes
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
    # the backbone lost its ImageNet classifier: it outputs pooled features
    assert model.backbone(torch.randn(2, 3, 32, 32)).shape == (2, 96)


def test_head_init_and_dropout_options():
    assert torch.count_nonzero(tiny(head_init="zeros").head.weight) == 0
    assert tiny(head_dropout=0.3).dropout.p == 0.3
    with pytest.raises(ConfigError, match="model.head_init='bad'"):
        tiny(head_init="bad")


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


def test_param_groups_lrs_and_no_weight_decay():
    model = tiny(backbone_lr_mult=0.1)
    opt = model.configure_optimizers()
    names = {g["name"]: g for g in opt.param_groups}
    assert set(names) == {"head", "head/no_decay", "backbone", "backbone/no_decay"}
    assert names["head"]["lr"] == pytest.approx(1e-3) and names["backbone"]["lr"] == pytest.approx(1e-4)
    assert names["head/no_decay"]["weight_decay"] == 0 and names["backbone/no_decay"]["weight_decay"] == 0
    assert names["head"]["weight_decay"] == 0.05
    assert all(p.ndim > 1 for p in names["backbone"]["params"])
    assert all(p.ndim <= 1 for p in names["backbone/no_decay"]["params"])
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters()))


def test_vit_tokens_get_no_weight_decay():
    model = ImageClassifier("vit_tiny_patch16_224", 10, pretrained=False, optimizer=ADAMW)
    opt = model.configure_optimizers()
    decay_ids = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    assert id(model.backbone.pos_embed) not in decay_ids and id(model.backbone.cls_token) not in decay_ids


def test_warmup_cosine_per_group_and_late_joiners():
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w1], "lr": 1.0}], lr=1.0)
    sched = WarmupSchedule(opt, total_steps=100, warmup_steps=10, min_lr_ratio=0.0)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # step 0 of a 10-step warmup
    for _ in range(50):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # cosine half-way
    opt.add_param_group({"params": [w2], "lr": 0.2, "start_step": 50})
    sched.refresh()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.2 * 0.1 * 0.5)  # its own warmup × shared cosine
    for _ in range(9):
        opt.step()
        sched.step()
    factor = 0.5 * (1 + torch.cos(torch.tensor(torch.pi * 59 / 100))).item()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.2 * factor)
    assert opt.param_groups[0]["lr"] == pytest.approx(1.0 * factor)


def test_plateau_applies_past_reductions_to_new_groups():
    w1, w2 = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w1], "lr": 1.0}], lr=1.0)
    sched = PlateauSchedule(opt, mode="max", factor=0.5, patience=0)
    sched.step(1.0)
    sched.step(0.5)  # no improvement: reduce
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)
    opt.add_param_group({"params": [w2], "lr": 0.1})
    sched.refresh()
    assert opt.param_groups[1]["lr"] == pytest.approx(0.05)
    sched.step(0.4)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.25, 0.025])


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


TIMM_CONFIGS = ["vit_base", "vit_small", "vit_tiny", "deit_base", "efficientnet_lite0",
                "efficientnet_lite0_offline", "tiny"]


@pytest.mark.parametrize("name", TIMM_CONFIGS + ["resnet18", "resnet50"])
def test_model_configs_match_the_backbones_pretrained_config(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}"]).model
    if cfg.source == "torchvision":
        assert list(cfg.mean) == [0.485, 0.456, 0.406] and list(cfg.std) == [0.229, 0.224, 0.225]
        return
    pre = timm.models.get_pretrained_cfg(cfg.backbone)
    assert list(cfg.mean) == pytest.approx(list(pre.mean)) and list(cfg.std) == pytest.approx(list(pre.std))
    if name != "tiny":  # the test model runs at CIFAR's native 32 px
        assert cfg.input_size == pre.input_size[-1]


def test_compiled_model_checkpoint_keys_load_into_an_uncompiled_one():
    compiled = tiny(compile=True)
    keys = list(compiled.state_dict())
    assert not any("_orig_mod" in k for k in keys)
    plain = tiny(compile=False)
    plain.load_state_dict(compiled.state_dict(), strict=True)
