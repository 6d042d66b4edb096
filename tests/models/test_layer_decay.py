"""Layer-wise LR decay: every backbone layer group's peak LR follows the formula, for groups that join
at the start, groups unfrozen later, and after a resume."""
from __future__ import annotations

import pytest

from cifar_ft.train import train
from tests.helpers import Recorder, state

BASE_LR, MULT, DECAY, DEPTH = 3e-3, 0.5, 0.5, 5  # test_resnet: 5 layer groups (stem, layer1..layer4)
COMMON = ["trainer.max_epochs=3", "strategy.frozen_epochs=1", f"optimizer.lr={BASE_LR}",
          f"model.backbone_lr_mult={MULT}", f"model.layer_decay={DECAY}", "trainer.deterministic=true",
          "callbacks.checkpoints.save_top_k=-1", "+callbacks.recorder._target_=tests.helpers.Recorder"]


def expected(layer: int) -> float:
    return BASE_LR * MULT * DECAY ** (DEPTH - layer)


def peaks(record: dict) -> dict[str, float]:
    return {name: peak for name, _, peak, _ in record["groups"]}


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_gradual_groups_join_at_their_decayed_lr_and_resume_keeps_them(cfg_factory):
    Recorder.records = []
    full = cfg_factory(*COMMON, "callbacks.freeze.unfreeze=gradual", "callbacks.freeze.groups_per_epoch=2", name="full")
    train(full)
    rec = list(Recorder.records)
    assert peaks(rec[0]) == {"head": BASE_LR, "head/no_decay": BASE_LR}  # the head at the top: depth 0
    for epoch, layers in ((1, (4, 3)), (2, (4, 3, 2, 1))):
        p = peaks(rec[epoch])
        for layer in layers:
            assert p[f"backbone.{layer}"] == pytest.approx(expected(layer))
            assert p[f"backbone.{layer}/no_decay"] == pytest.approx(expected(layer))
    Recorder.records = []
    ckpt = f"{full.paths.output_dir}/checkpoints/best-epoch001.ckpt"
    resumed = cfg_factory(*COMMON, "callbacks.freeze.unfreeze=gradual", "callbacks.freeze.groups_per_epoch=2",
                          f"ckpt_path={ckpt}", name="resumed")
    train(resumed)
    assert Recorder.records[-1]["groups"] == rec[-1]["groups"]
    want, got = state(f"{full.paths.output_dir}/checkpoints/last.ckpt"), state(
        f"{resumed.paths.output_dir}/checkpoints/last.ckpt")
    assert all((want[k] == got[k]).all() for k in want)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_unfreezing_all_at_once_splits_the_backbone_by_layer(cfg_factory):
    Recorder.records = []
    train(cfg_factory(*COMMON))
    p = peaks(Recorder.records[1])
    for layer in range(DEPTH):
        assert p[f"backbone.L{layer}"] == pytest.approx(expected(layer))
    assert set(p) == {"head", "head/no_decay"} | {f"backbone.L{i}{s}" for i in range(DEPTH) for s in ("", "/no_decay")}
