"""Checkpoints: atomic writes that survive a kill mid-write, and what ckpt_path= resolves to."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_ft.errors import ConfigError
from cifar_ft.runs.checkpoints import resolve_ckpt
from tests.conftest import ROOT

# Writes last.ckpt twice; during the second write, the process is SIGKILLed halfway through the
# bytes of whatever file the checkpoint code writes (a kill "at any moment" made deterministic).
WRITER = """
import builtins, os, signal, sys, torch
from cifar_ft.runs.checkpoints import AtomicCheckpointIO
path, kind = sys.argv[1], sys.argv[2]
real_open, armed = builtins.open, [False]
class DiesHalfway:
    def __init__(self, f): self.f, self.written = f, 0
    def write(self, data):
        self.written += len(data)
        if self.written > 12_000_000:  # half of the 24 MB checkpoint
            self.f.write(bytes(data)[: len(data) // 2]); self.f.flush(); os.kill(os.getpid(), signal.SIGKILL)
        return self.f.write(data)
    def __getattr__(self, name): return getattr(self.f, name)
    def __enter__(self): return self
    def __exit__(self, *exc): self.f.close()
def dying_open(file, mode="r", *args, **kwargs):
    f = real_open(file, mode, *args, **kwargs)
    return DiesHalfway(f) if armed[0] and "w" in mode and "last.ckpt" in str(file) else f
builtins.open = dying_open
for i in (1, 2):
    armed[0] = i == 2
    checkpoint = {"i": i, "w": torch.full((6_000_000,), float(i))}
    if kind == "atomic":
        AtomicCheckpointIO().save_checkpoint(checkpoint, path)
    else:  # the plain torch.save(obj, path) of most training loops
        with open(path, "wb") as f:
            torch.save(checkpoint, f)
"""


def test_ckpt_path_last_resolves_inside_the_run_dir(tmp_path):

    assert resolve_ckpt(None, tmp_path) is None
    with pytest.raises(ConfigError, match="ckpt_path='last': no checkpoint at .*last.ckpt.*hydra.run.dir"):
        resolve_ckpt("last", tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert resolve_ckpt("last", tmp_path) == str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(ConfigError, match="ckpt_path='nope.ckpt'"):
        resolve_ckpt("nope.ckpt", tmp_path)


def kill_while_writing(path: Path, kind: str) -> str:
    proc = subprocess.run([sys.executable, "-c", WRITER, str(path), kind], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    try:
        ckpt = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to load is the finding
        return f"unloadable ({type(exc).__name__})"
    return "previous" if ckpt["i"] == 1 and bool((ckpt["w"] == 1).all()) else "mixed"


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_checkpoint_killed_while_writing_leaves_the_previous_one_loadable(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    assert kill_while_writing(path, "atomic") == "previous"
    # the half-written file was a temporary in the same directory (so the rename is atomic even
    # where /tmp is another file system); the next save removes it
    leftovers = [n for n in os.listdir(path.parent) if n != "last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.ckpt.tmp-")
    # the same kill against a plain torch.save(obj, path) loses the checkpoint: the test can fail
    plain = tmp_path / "plain" / "last.ckpt"
    plain.parent.mkdir()
    assert kill_while_writing(plain, "plain").startswith("unloadable")


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_checkpoint_with_non_finite_weights_is_refused_in_one_line(cfg_factory, tmp_path):
    import torch

    from cifar_ft.errors import ConfigError
    from cifar_ft.runs.checkpoints import load_classifier
    from cifar_ft.train import train

    cfg = cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=0", "data.train_size=176")
    train(cfg)
    ckpt_path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(ckpt_path, weights_only=True)
    ckpt["state_dict"]["head.weight"][0, 0] = float("nan")
    torch.save(ckpt, tmp_path / "nan.ckpt")
    load_classifier(str(ckpt_path))  # the good one loads
    with pytest.raises(ConfigError, match=r"non-finite weights \(NaN/inf\) in 1 tensor\(s\), e.g. head.weight"):
        load_classifier(str(tmp_path / "nan.ckpt"))
