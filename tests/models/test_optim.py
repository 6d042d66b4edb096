"""Parameter groups (lr_scale, no weight decay on norms/biases/tokens) and per-group LR schedules."""
from __future__ import annotations

import pytest
import torch

from cifar_ft.models.factory import build_classifier
from cifar_ft.models.optim import PlateauSchedule, WarmupSchedule
from tests.models.test_classifier import ADAMW, tiny


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
    model = build_classifier(backbone="vit_tiny_patch16_224", num_classes=10, pretrained=False, optimizer=ADAMW)
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


def test_linear_decay_falls_in_a_straight_line_to_its_floor():
    w = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [w], "lr": 1.0}], lr=1.0)
    sched = WarmupSchedule(opt, total_steps=100, warmup_steps=0, decay="linear", min_lr_ratio=0.1)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1.0) and lrs[50] == pytest.approx(0.55) and lrs[75] == pytest.approx(0.325)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)  # the floor at the end, not cosine's 0.5 at 50


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
