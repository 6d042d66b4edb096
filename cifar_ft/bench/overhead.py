"""`bench speed` rows 5 and 6: what the framework costs per step beyond the model's own compute.

(5) Images/s of the same model, batch and input three ways: a plain PyTorch loop, a bare
    LightningModule (no callbacks, one logged loss), and our real command
    (`python -m cifar_ft.train ... ++trainer.max_steps=N`, on its own uint8 data path). The Lightning
    runs are timed from TensorBoard's event stamps between logged steps (start-up, validation and test
    excluded), as one would measure them from outside; the plain loop reads its clock at the same
    steps, on fresh batches from the same loader, before and after the others (the faster counts).
(6) With 2 gloo ranks on the CPU: Python-level collectives per training step, ours vs bare DDP
    (DDP's own gradient all-reduce runs in C++ and is not among them).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from cifar_ft.bench.ddp_probe import BareModule, synthetic_loader
from cifar_ft.bench.speed_common import plain_loop_logged, prepared_model

ROOT = Path(__file__).resolve().parents[2]
CASES = {"tiny@32": (["model=tiny"], 32, 64, 400), "lite0@64": (["model=efficientnet_lite0_offline",
                                                                 "model.input_size=64"], 64, 64, 60)}


def logged_rate(tb_dir: Path, batch: int, skip: int = 1) -> float:
    """Images/s between the first and the last logged `train/loss` (after `skip` warm-up points)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = []
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        if "train/loss" in acc.Tags().get("scalars", []):
            events += [(e.step, e.wall_time) for e in acc.Scalars("train/loss")]
    events = sorted(events)[skip:]
    (s0, t0), (s1, t1) = events[0], events[-1]
    return (s1 - s0) * batch / (t1 - t0)


def ours(overrides: list[str], batch: int, steps: int, out: Path) -> float:
    args = [*overrides, "data=synthetic", f"data.train_size={batch * (steps + 2) + 64}", "data.val_size=64",
            "data.test_size=64", f"data.batch_size={batch}", "data.augment=none", "strategy.frozen_epochs=0",
            f"++trainer.max_steps={steps}", "trainer.accelerator=cpu", f"hydra.run.dir={out}"]
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    return logged_rate(out / "tensorboard", batch)


def bare(net: torch.nn.Module, batch: int, size: int, steps: int, out: Path) -> float:
    module = BareModule()
    module.net = net  # the very model (memory format included) the plain loop trains
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, max_epochs=-1, enable_checkpointing=False,
                        logger=L.pytorch.loggers.TensorBoardLogger(str(out), name="tensorboard", version=""),
                        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=10)
    trainer.fit(module, synthetic_loader(steps + 1, batch, size))
    return logged_rate(out / "tensorboard", batch)


def overhead_rows(out: Path) -> list[dict]:
    rows = []
    for case, (overrides, size, batch, steps) in CASES.items():
        net = prepared_model(overrides, out / case / "cfg")
        loader = synthetic_loader(steps + 1, batch, size)
        first = plain_loop_logged(net, loader, steps)
        b = bare(net, batch, size, steps, out / case / "bare")
        o = ours(overrides, batch, steps, out / case / "ours")
        plain = max(first, plain_loop_logged(net, loader, steps))  # before and after: the faster one
        rows += [{"row": f"5 {case} b{batch}: plain loop", "value": plain, "unit": "img/s"},
                 {"row": f"5 {case} b{batch}: bare LightningModule", "value": b, "unit": "img/s", "ratio": b / plain},
                 {"row": f"5 {case} b{batch}: ours (python -m cifar_ft.train)", "value": o, "unit": "img/s",
                  "ratio": o / plain}]
    return rows


def collectives(out: Path, kind: str, overrides: list[str]) -> tuple[float, float]:
    """Mean Python-level collectives per training step: (all steps, non-periodic steps), rank 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.bench.ddp_probe", str(out), kind, *overrides], cwd=ROOT,
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    steps = json.loads((out / "rank0.json").read_text())
    quiet = [s for s in steps if not s["periodic"]]
    return (sum(sum(s["calls"].values()) for s in steps) / len(steps),
            sum(sum(s["calls"].values()) for s in quiet) / max(1, len(quiet)))


def collective_rows(out: Path) -> list[dict]:
    rows = []
    for name, kind, overrides in (("bare DDP LightningModule", "bare", []),
                                  ("ours, full fine-tuning", "ours", ["strategy.frozen_epochs=0"]),
                                  ("ours, 1 frozen epoch then unfrozen", "ours", ["strategy.frozen_epochs=1"])):
        every, quiet = collectives(out / kind / name.replace(" ", "_").replace(",", ""), kind, overrides)
        rows.append({"row": f"6 DDP 2 gloo ranks: {name}", "value": every, "unit": "collectives/step",
                     "non_periodic": quiet})
    return rows
