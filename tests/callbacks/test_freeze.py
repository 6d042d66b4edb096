"""The freeze schedule: exact requires_grad per epoch, optimizer groups, BN statistics, resume."""
from __future__ import annotations

import pytest
import torch

from cifar_ft.errors import ConfigError, find_user_error
from cifar_ft.train import train
from tests.helpers import Recorder, state

RECORD = ["+callbacks.recorder._target_=tests.helpers.Recorder"]
GROUPS = ["conv1", "layer1", "layer2", "layer3", "layer4"]  # test_resnet's timm layer groups


def trainable_groups(record: dict) -> list[str]:
    """Layer groups whose parameters all require grad (asserting none is half-frozen)."""
    out = []
    for g in GROUPS:
        flags = {v for n, v in record["requires_grad"].items() if n.split(".")[0] in (g, "bn1" if g == "conv1" else g)}
        assert len(flags) == 1, f"group {g} partly frozen"
        if flags.pop():
            out.append(g)
    return out


def run(cfg_factory, *overrides, name="run"):
    Recorder.records = []
    cfg = cfg_factory(*RECORD, *overrides, name=name)
    train(cfg)
    return cfg, list(Recorder.records)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_gradual_unfreeze_exact_requires_grad_and_groups(cfg_factory):
    _, rec = run(cfg_factory, "trainer.max_epochs=4", "strategy.frozen_epochs=1",
                 "callbacks.freeze.unfreeze=gradual", "callbacks.freeze.groups_per_epoch=2")
    assert [r["epoch"] for r in rec] == [0, 1, 2, 3]
    assert trainable_groups(rec[0]) == []
    assert trainable_groups(rec[1]) == ["layer3", "layer4"]  # deepest first
    assert trainable_groups(rec[2]) == ["layer1", "layer2", "layer3", "layer4"]
    assert trainable_groups(rec[3]) == GROUPS
    names = [[g[0] for g in r["groups"]] for r in rec]
    assert names[0] == ["head", "head/no_decay"]
    assert names[1] == names[0] + ["backbone.4", "backbone.4/no_decay", "backbone.3", "backbone.3/no_decay"]
    assert names[3][-2:] == ["backbone.0", "backbone.0/no_decay"]
    # new groups join at the backbone LR (lr * backbone_lr_mult) as their peak
    peak = {g[0]: g[2] for g in rec[3]["groups"]}
    assert peak["head"] == pytest.approx(3e-3) and peak["backbone.0"] == pytest.approx(3e-3)
    # ... and warm up from there: on joining, a group is far below its peak
    joined = {g[0]: g[1] for g in rec[1]["groups"]}
    assert joined["backbone.4"] < 0.5 * peak["backbone.4"]


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_frozen_batchnorm_keeps_running_stats(cfg_factory):
    _, rec = run(cfg_factory, "trainer.max_epochs=2", "strategy.frozen_epochs=1")
    assert torch.equal(rec[0]["bn_mean"], rec[0]["bn_mean_end"])  # frozen epoch: statistics untouched
    assert not torch.equal(rec[1]["bn_mean"], rec[1]["bn_mean_end"])  # unfrozen: they update


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_full_finetune_and_linear_probe(cfg_factory):
    _, rec = run(cfg_factory, "trainer.max_epochs=1", "strategy.frozen_epochs=0", name="ft")
    assert trainable_groups(rec[0]) == GROUPS
    assert [g[0] for g in rec[0]["groups"]] == ["head", "head/no_decay", "backbone", "backbone/no_decay"]
    _, rec = run(cfg_factory, "trainer.max_epochs=2", "strategy.frozen_epochs=2", name="lp")
    assert all(trainable_groups(r) == [] for r in rec)
    assert all(len(r["groups"]) == 2 for r in rec)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_freeze_epochs_beyond_max_epochs_is_rejected(cfg_factory):
    """One rule, in one place (runs/limits.py), before anything is built."""
    from cifar_ft.runs.limits import check_limits

    cfg = cfg_factory("trainer.max_epochs=2", "strategy.frozen_epochs=3")
    with pytest.raises(Exception) as info:
        train(cfg)
    err = find_user_error(info.value)
    assert isinstance(err, ConfigError) and "frozen_epochs=3 > trainer.max_epochs=2" in str(err)
    values = {"strategy.frozen_epochs": 3, "trainer.max_epochs": 2}
    with pytest.raises(ConfigError, match="frozen_epochs=3 > trainer.max_epochs=2"):
        check_limits(lambda key: values.get(key), object())


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("unfreeze", ["gradual", "all"])
def test_resume_in_either_phase_matches_uninterrupted_run(cfg_factory, unfreeze):
    common = ["trainer.max_epochs=3", "strategy.frozen_epochs=1", f"callbacks.freeze.unfreeze={unfreeze}",
              "callbacks.freeze.groups_per_epoch=2", "callbacks.checkpoints.save_top_k=-1",
              "trainer.deterministic=true"]
    full, rec_full = run(cfg_factory, *common, name="full")
    ckpts = {e: f"{full.paths.output_dir}/checkpoints/best-epoch{e:03d}.ckpt" for e in (0, 1)}
    reference = state(f"{full.paths.output_dir}/checkpoints/last.ckpt")
    for epoch, ckpt in ckpts.items():  # epoch 0: frozen phase; epoch 1: after unfreezing
        resumed, rec = run(cfg_factory, *common, f"ckpt_path={ckpt}", name=f"resume{epoch}")
        assert [r["epoch"] for r in rec] == list(range(epoch + 1, 3))  # no lost or repeated epochs
        assert rec[-1]["groups"] == rec_full[-1]["groups"]  # same groups, same LRs
        final = state(f"{resumed.paths.output_dir}/checkpoints/last.ckpt")
        for key, value in reference.items():
            assert torch.equal(value, final[key]), f"resume from epoch {epoch}: {key} differs"


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_resumed_run_that_unfroze_resumes_again(cfg_factory, tmp_path):
    """Run 1 ends frozen; run 2 resumes it and unfreezes at its start (on_train_start); run 3 resumes run 2:
    the groups run 2 added must be in its checkpoint's callback state, or the optimizer cannot be restored."""
    from cifar_ft.train import train

    common = ["strategy.frozen_epochs=1", f"hydra.run.dir={tmp_path / 'r'}"]
    for epochs in (1, 2, 3):
        resume = ["ckpt_path=last"] if epochs > 1 else []
        cfg = cfg_factory(*common, f"trainer.max_epochs={epochs}", *resume, name="r")
        train(cfg)
        ckpt = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)
        tags = {g.get("tag") for g in ckpt["optimizer_states"][0]["param_groups"]}
        assert ckpt["epoch"] == epochs - 1 and ("backbone" in tags) == (epochs > 1), (epochs, tags)


def test_a_gradual_schedule_longer_than_the_run_is_said_in_one_line_before_training(caplog):
    """5 groups, one per epoch after 1 frozen epoch: 3 epochs unfreeze 2 of them, 6 epochs all of them."""
    import logging

    from cifar_ft.callbacks.freeze import FreezeSchedule

    schedule = FreezeSchedule(freeze_epochs=1, unfreeze="gradual", groups_per_epoch=1)
    schedule._groups = [[g] for g in GROUPS]
    with caplog.at_level(logging.WARNING, logger="cifar_ft.callbacks.freeze"):
        schedule._warn_if_cut_short(3)
        schedule._warn_if_cut_short(6)
        FreezeSchedule(freeze_epochs=1, unfreeze="all")._warn_if_cut_short(2)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0]
    assert lines[0].startswith("callbacks.freeze.unfreeze=gradual: only 2 of the 5 layer groups train")
    assert "trainer.max_epochs>=6" in lines[0]
