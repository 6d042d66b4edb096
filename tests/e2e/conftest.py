"""A small finished training run shared by the command-level tests that only read it."""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from cifar_ft.train import train
from tests.conftest import FAST, make_cfg


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A 2-epoch FAST run (first epoch frozen): checkpoints/, metrics.json, .hydra/ like a real run."""
    run = tmp_path_factory.mktemp("smoke_run")
    train(make_cfg([*FAST, "trainer.max_epochs=2"], run))
    (run / ".hydra").mkdir(exist_ok=True)
    (run / ".hydra" / "overrides.yaml").write_text("- experiment=smoke\n- trainer.max_epochs=2\n")
    (run / "junk").mkdir()  # damaged files a user might pass: random bytes, a cut-off safetensors header
    (run / "junk" / "random.ckpt").write_bytes(bytes(range(256)) * 20)
    (run / "junk" / "bad.safetensors").write_bytes(b"\xff" * 8 + b"{}")
    (run / "junk" / "truncated.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:3000])
    (run / "junk" / "raw_pickle.ckpt").write_bytes(pickle.dumps({"state_dict": {}}, protocol=4))
    torch.save({"state_dict": {}}, run / "junk" / "legacy.ckpt", _use_new_zipfile_serialization=False)
    diverged = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    diverged["state_dict"]["head.weight"][0, 0] = float("nan")
    torch.save(diverged, run / "junk" / "nan.ckpt")
    return run
