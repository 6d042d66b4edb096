"""Bad input and failing runs: one line naming the bad value, a non-zero exit, nothing lost."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.train import train
from tests.conftest import ROOT


def cli_error(*args: str) -> str:
    """Run the training command; assert exit code 2 and exactly one stderr line; return it."""
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    return lines[0]


def test_unknown_config_group_option_is_one_line_with_valid_options(tmp_path):
    line = cli_error("model=vit_bse", f"hydra.run.dir={tmp_path}")
    assert "model=vit_bse" in line and "valid:" in line and "resnet18" in line and "Did you mean: vit_base" in line
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing was started


def test_unknown_key_and_bad_override_syntax_are_one_line(tmp_path):
    assert "+trainer.max_epoch=" in cli_error("trainer.max_epoch=3", f"hydra.run.dir={tmp_path}")
    assert "data.batch_size=[1" in cli_error("data.batch_size=[1", f"hydra.run.dir={tmp_path}")


def test_unwritable_output_directory_is_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    line = cli_error("experiment=smoke", f"hydra.run.dir={blocker}/run")
    assert f"{blocker}/run" in line and "hydra.run.dir" in line
    assert blocker.read_text() == "not a directory"  # nothing lost


def test_unwritable_paths_output_dir_fails_before_training(cfg_factory, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cfg = cfg_factory()
    cfg.paths.output_dir = str(blocker / "run")
    with pytest.raises(ConfigError, match="paths.output_dir=.*a_file/run.* is not writable"):
        train(cfg)
