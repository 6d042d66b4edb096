"""EMA of the weights: it differs from the live weights, validation, test and checkpoints use it,
resuming is bit-exact, and its update reads nothing back from the device."""
from __future__ import annotations

import json
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from cifar_ft.eval import evaluate
from cifar_ft.train import train
from tests.conftest import make_cfg
from tests.e2e.test_resilience import cli, signal_at

EMA = ["callbacks=[default,ema]", "callbacks.ema.decay=0.9"]


class ValWeights(L.Callback):
    """The head weights the model validates with, per epoch (after the EMA swapped its average in)."""

    seen: dict[int, torch.Tensor] = {}

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        ValWeights.seen[trainer.current_epoch] = pl_module.head.weight.detach().clone()


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_ema_weights_are_what_validation_test_and_checkpoints_use(cfg_factory, tmp_path):
    ValWeights.seen = {}
    cfg = cfg_factory("trainer.max_epochs=2", *EMA,
                      "+callbacks.val_weights._target_=tests.callbacks.test_ema.ValWeights")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    last = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    ema, live = last["state_dict"], last["current_model_state"]
    assert (ema["head.weight"] - live["head.weight"]).abs().max() > 1e-4  # the average is not the live model
    assert torch.equal(ValWeights.seen[1], ema["head.weight"])  # epoch 1 validated with the average
    metrics = json.loads((out / "metrics.json").read_text())
    best = torch.load(metrics["best_ckpt"], weights_only=True)
    assert "current_model_state" in best  # the best checkpoint holds the average as its state_dict
    ecfg = make_cfg([f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", "data.train_size=480", "data.val_size=80",
                     "data.test_size=160", "trainer.enable_progress_bar=false"], tmp_path / "e", "eval")
    assert evaluate(ecfg)["test/acc"] == metrics["test/acc"]  # the run's test used the average too


@pytest.mark.slow  # 3 runs: ~20 s
def test_ema_resume_is_bit_exact(tmp_path):
    reference = tmp_path / "reference"
    assert cli(reference, *EMA).returncode == 0
    run_dir = tmp_path / "preempted"
    proc = cli(run_dir, *EMA, *signal_at(17, "SIGTERM"))  # epoch 1, after unfreezing
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-2000:]
    assert cli(run_dir, *EMA, "ckpt_path=last").returncode == 0
    want = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    for part in ("state_dict", "current_model_state"):
        for key, value in want[part].items():
            assert torch.equal(value, got[part][key]), f"{part}: {key}"
    assert got["callbacks"]["EMA"] == want["callbacks"]["EMA"]
