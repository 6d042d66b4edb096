"""The commands' error shell: user errors are one line with exit 2, bugs keep their traceback."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cifar_ft.runs.entry import report_errors
from cifar_ft.train import train


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
    last = torch.load(ckpts / "last.ckpt", weights_only=True)
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


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_best_checkpoint_follows_the_metric_direction(tmp_path):
    """optimized_metric=val/loss keeps (and tests) the epoch of the smallest loss, not the largest."""
    from cifar_ft.reports.figures import read_scalars
    from cifar_ft.runs.compose import compose_config
    from cifar_ft.train import train
    from tests.conftest import FAST

    cfg = compose_config([*FAST, "optimized_metric=val/loss", "trainer.max_epochs=3", "optimizer.lr=0.3"], tmp_path)
    assert cfg.optimized_mode == "min"
    train(cfg)
    losses = [v for _, v in read_scalars(Path(tmp_path) / "tensorboard")["val/loss"] if v == v]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert len(losses) == 3 and metrics["val/loss_best"] == pytest.approx(min(losses))
    from hydra import compose, initialize_config_dir

    from cifar_ft.runs.compose import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sweep = compose(config_name="train", overrides=["hparams_search=optuna", "optimized_metric=val/loss"],
                        return_hydra_config=True)
    assert sweep.hydra.sweeper.direction == "minimize"


def test_metric_mode_by_name():
    from cifar_ft.runs.resolvers import metric_mode

    assert [metric_mode(m) for m in ("val/acc", "val/loss", "test/ece", "fit_time_s", "train/images_per_sec",
                                     "val/acc_best", "test/nll")] == ["max", "min", "min", "min", "max", "max", "min"]


def test_the_installed_hydra_still_has_the_private_parser_prevalidate_reads():
    """`prevalidate` reads the command line with Hydra's own parser (`hydra._internal.utils.get_args_parser`,
    no public equivalent), before Hydra runs: this fails the day it moves or drops a flag we read."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(["-m", "--experimental-rerun", "x.pickle", "a=1", "b=2"])
    for flag in ("help", "hydra_help", "cfg", "info", "shell_completion", "config_name", "config_path",
                 "config_dir", "experimental_rerun", "multirun", "overrides"):
        assert hasattr(args, flag), flag
    assert args.multirun and args.overrides == ["a=1", "b=2"] and args.experimental_rerun == "x.pickle"
