"""Bad input and failing runs: one line naming the bad value, a non-zero exit, nothing lost."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_ft.cli import report_errors
from cifar_ft.errors import ConfigError
from cifar_ft.train import train

ROOT = Path(__file__).resolve().parents[1]


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


def run_reporting(cfg) -> None:
    """`report_errors(train, cfg)` as the command line runs it: must exit with code 2."""
    with pytest.raises(SystemExit) as info:
        report_errors(train, cfg)
    assert info.value.code == 2


def test_nan_loss_stops_naming_step_and_lr_and_keeps_the_last_good_checkpoint(cfg_factory, capsys):
    # 12 steps per epoch: the NaN is injected before step 15, inside epoch 1
    cfg = cfg_factory("trainer.max_epochs=3", "+callbacks.poison._target_=tests.helpers.PoisonAt",
                      "+callbacks.poison.step=15")
    run_reporting(cfg)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: training loss became non-finite (nan) at step 15")
    assert "lr head " in err[0] and "optimizer.lr" in err[0]
    ckpts = Path(cfg.paths.output_dir) / "checkpoints"
    assert f"last good checkpoint: {ckpts / 'last.ckpt'}" in err[0]
    last = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert last["global_step"] == 12  # the end of epoch 0: nothing written after the NaN
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert sorted(p.name for p in ckpts.iterdir()) == ["best-epoch000.ckpt", "last.ckpt"]


def test_gpu_out_of_memory_suggests_batch_size_and_precision(cfg_factory, capsys):
    cfg = cfg_factory("+callbacks.poison._target_=tests.helpers.PoisonAt", "+callbacks.poison.step=3",
                      "+callbacks.poison.what=oom")
    run_reporting(cfg)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: out of GPU memory at data.batch_size=32")
    assert "data.batch_size=16" in err[0] and "bf16-mixed" in err[0] and "Tried to allocate 20.00 GiB" in err[0]


def test_bugs_keep_their_traceback(cfg_factory):
    """Only user errors are shortened; anything else propagates unchanged."""
    with pytest.raises(ZeroDivisionError):
        report_errors(lambda cfg: 1 / 0, cfg_factory())
