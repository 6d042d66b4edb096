"""No per-step syncs: over a real training run, host reads of device values happen only on periodic
steps (logging steps, an epoch's first and last batch); none on the others."""
from __future__ import annotations

import pytest

from cifar_ft.bench.probes import StepProbe
from cifar_ft.train import train

# 12 steps per epoch, logging every 5: steps 0, 4, 9, 11 of each epoch are periodic, 8 are not
RUN = ["trainer.max_epochs=3", "strategy.frozen_epochs=1", "trainer.log_every_n_steps=5",
       "trainer.enable_progress_bar=true", "+callbacks.progress_bar._target_=cifar_ft.callbacks.progress."
       "LoggedLossProgressBar", "data.mixup_alpha=0.2", "callbacks=[default,ema]", "callbacks.ema.decay=0.99",
       "data.random_erasing=0.25"]  # EMA and random erasing on: sync-free too


def test_no_host_reads_on_steps_that_are_not_periodic(cfg_factory):
    with StepProbe("host_reads") as probe:
        train(cfg_factory(*RUN))
    assert len(probe.steps) == 36 and [s.epoch for s in probe.steps] == [0] * 12 + [1] * 12 + [2] * 12
    quiet = [s for s in probe.steps if not s.periodic]
    assert len(quiet) == 24
    offenders = {(s.epoch, s.batch): dict(s.calls) for s in quiet if s.calls}
    assert not offenders, f"host reads on non-periodic steps: {offenders}"
    # the probe does see reads: the logger reads the loss back on logging steps
    assert all(s.calls for s in probe.steps if (s.global_step + 1) % 5 == 0)


@pytest.mark.slow  # 2 gloo ranks: ~12 s
def test_ddp_steps_add_no_collective_beyond_gradient_buckets(tmp_path):
    """2 gloo ranks, epoch 0 frozen (cached features), epochs 1-2 unfrozen; 6 steps per epoch per rank.
    Non-periodic steps: no Python-level collective while frozen; once unfrozen, exactly one: the
    all-reduce of the gradients DDP does not know (the backbone was frozen when DDP wrapped the
    model), one flat bucket as large as the backbone. DDP's own buckets run in C++ (not counted)."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "e2e" / "step_cost_worker.py"), str(tmp_path),
                           "trainer.max_epochs=3", "strategy.frozen_epochs=1", "trainer.log_every_n_steps=4"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    backbone = sum(p.numel() for p in __import__("timm").create_model("test_resnet", num_classes=0).parameters())
    for rank in (0, 1):
        steps = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert len(steps) == 18
        quiet = [s for s in steps if not s["periodic"]]
        assert len(quiet) == 9  # per epoch: batches 1, 2, 4 (0 and 5 end epochs; steps 3, 7, 11, ... log)
        for s in quiet:
            if s["epoch"] == 0:
                assert s["calls"] == {}, s
            else:
                assert s["calls"] == {"all_reduce": 1} and s["sizes"] == [backbone], s
        assert any(s["calls"] for s in steps if s["periodic"])  # the probe does count collectives
