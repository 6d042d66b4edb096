"""A small finished training run shared by the command-level tests that only read it."""
from __future__ import annotations

from pathlib import Path

import pytest

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
    return run
