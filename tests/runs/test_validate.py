"""Config checks before anything runs: required keys, values that do not resolve, bad choices; each a
one-line error (exit 2) written before any run directory."""
from __future__ import annotations

import subprocess
import sys

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.runs.compose import compose_config
from cifar_ft.runs.validate import validate_config
from tests.conftest import ROOT


@pytest.mark.parametrize("command", ["eval", "predict", "export"])
def test_a_command_without_its_checkpoint_says_so_in_one_line(command, tmp_path):
    proc = subprocess.run([sys.executable, "-m", f"cifar_ft.{command}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ckpt_path is required; give ckpt_path=PATH")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides", [["tta=bogus"], ["tta=flipp"]])
def test_any_invalid_tta_is_one_line(overrides):
    with pytest.raises(ConfigError, match=r"tta='flipp?'? ?.*is not valid; valid: none, flip|tta='bogus' is not"):
        validate_config(compose_config(["experiment=smoke", *overrides]))


def test_a_value_that_does_not_resolve_is_named_not_skipped():
    cfg = compose_config(["experiment=smoke", "data.batch_size=${oc.env:CIFAR_FT_TEST_SURELY_UNSET}"])
    with pytest.raises(ConfigError, match="data.batch_size: its value cannot be resolved .*CIFAR_FT_TEST_SURELY"):
        validate_config(cfg)


def test_hydra_values_are_left_to_the_run():
    validate_config(compose_config(["experiment=smoke"]))  # ${hydra:...} keys resolve only inside a run


def test_several_devices_without_a_gpu_are_refused_unless_cpu_is_explicit():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: trainer.devices=2 means two of them")
    with pytest.raises(ConfigError, match="trainer.devices=2 with trainer.accelerator=auto: no GPU was found"):
        validate_config(compose_config(["experiment=smoke", "trainer=default", "trainer.devices=2"]))
    validate_config(compose_config(["experiment=smoke", "trainer=ddp_cpu"]))  # explicit CPU processes: fine
