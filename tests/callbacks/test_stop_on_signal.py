"""StopOnSignal replaces a private method of Lightning's training loop: a rename must fail loudly."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

from cifar_ft.callbacks.stop_on_signal import _LIGHTNING_SIGTERM_BROADCAST, StopOnSignal


def test_the_installed_lightning_still_has_the_method_we_replace():
    assert hasattr(_TrainingEpochLoop, _LIGHTNING_SIGTERM_BROADCAST)


def test_a_lightning_without_it_stops_a_ddp_run_with_a_clear_error(tmp_path):
    loop = SimpleNamespace()  # a loop of a Lightning that renamed the method
    trainer = SimpleNamespace(fit_loop=SimpleNamespace(epoch_loop=loop), world_size=2, log_every_n_steps=5,
                              global_step=0)
    with pytest.raises(RuntimeError, match="has no SimpleNamespace._broadcast_sigterm_tensor"):
        StopOnSignal(str(tmp_path)).on_train_start(trainer, None)


CACHE_RUN = ["experiment=smoke", "data.train_size=2000", "data.val_size=80", "data.test_size=80",
             "data.batch_size=32", "trainer.max_epochs=2", "strategy.frozen_epochs=1",
             "trainer.enable_progress_bar=false", "+callbacks.sig._target_=tests.helpers.SignalDuringCache"]


def _stopped_within(proc, seconds: float) -> None:
    import re
    import time as _time

    sent = float(re.search(r"signal sent at ([0-9.]+)", proc.stdout).group(1))
    assert _time.time() - sent < seconds + 15  # the process had ended by the time we looked (+ its exit)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_sigterm_during_the_feature_cache_stops_at_once_with_nothing_to_save(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *CACHE_RUN, f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr[-2000:]
    assert "during the feature cache (train), before the first training step: nothing to save yet" in proc.stderr
    _stopped_within(proc, 30)
    assert not (tmp_path / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow  # 2 gloo ranks: ~30 s
def test_sigterm_to_one_rank_during_the_cache_stops_both_ranks(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *CACHE_RUN, "trainer=ddp_cpu", "trainer.devices=2",
                           "+callbacks.sig.rank=1", f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 143, proc.stderr[-3000:]
    _stopped_within(proc, 30)


def test_the_installed_lightning_still_has_the_validation_counters_a_stop_rewinds():
    """`_rewind_validation` records a validation as started with no batch done through the loop's progress
    counters, which Lightning (>= 2.2) reads to run it again on resume: this fails the day they move."""
    from lightning.pytorch.loops.evaluation_loop import _EvaluationLoop
    from lightning.pytorch.loops.progress import _BatchProgress

    assert isinstance(getattr(_EvaluationLoop, "restarted_mid_evaluation", None), property)
    progress = _BatchProgress()
    for counters in (progress.total, progress.current):
        assert {"ready", "started", "processed", "completed"} <= set(vars(counters))
