"""`logger=`: each tracker's keys under its own name, several at once, and bad input in one line before a run."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.trackers.build import TRACKERS, tracker_options
from cifar_ft.trackers.config import MLflowOptions
from cifar_ft.trackers.mlflow_tracker import check, default_uri
from tests.conftest import ROOT, make_cfg


def test_several_trackers_at_once_each_under_its_own_name(tmp_path):
    cfg = make_cfg(["experiment=smoke", "logger=[tensorboard,csv,mlflow,wandb]",
                    "logger.mlflow.tracking_uri=http://example:5000", "logger.wandb.mode=offline"], tmp_path)
    options = tracker_options(dict(cfg.logger))
    assert list(options) == ["tensorboard", "csv", "mlflow", "wandb"]
    assert options["mlflow"].tracking_uri == "http://example:5000" and options["wandb"].mode == "offline"
    assert set(TRACKERS) == {p.stem for p in (ROOT / "conf" / "logger").glob("*.yaml")}


def test_the_default_mlflow_store_is_sqlite_beside_the_runs(tmp_path):
    assert default_uri(tmp_path / "outputs" / "train" / "2026-12-07_10-00-00") == \
        f"sqlite:///{(tmp_path / 'outputs' / 'mlflow.db').resolve()}"
    assert default_uri(tmp_path / "runs" / "r1") == f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"


@pytest.mark.parametrize("uri,said", [("http://127.0.0.1:9", "no MLflow server answers there"),
                                      ("file:./mlruns", "file store is refused"),
                                      ("mlruns", "file store is refused")])
def test_a_tracking_uri_that_cannot_work_is_one_line(uri, said):
    with pytest.raises(ConfigError, match=said) as info:
        check(MLflowOptions(tracking_uri=uri, timeout_s=2))
    assert "\n" not in str(info.value) and uri in str(info.value)


@pytest.mark.command  # starts a process: the command tier
@pytest.mark.parametrize("args,said", [(["logger=banana"], "logger=banana: no such logger config; valid: csv, mlflow"),
                                       (["logger.mlflow.tracking_uri=http://x"], "logger.mlflow"),
                                       (["logger=mlflow", "logger.mlflow.timeout_s=0"], "logger.mlflow.timeout_s=0")])
def test_bad_logger_input_is_one_line_from_the_check_command(args, said):
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.check", "experiment=smoke", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and said in lines[0], proc.stderr


def test_a_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed: import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[mlflow\]'"):
        check(MLflowOptions())


@pytest.mark.command  # starts a run: the command tier
def test_a_run_with_a_silent_server_stops_before_writing_anything(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "experiment=smoke", "logger=[tensorboard,mlflow]",
                           "logger.mlflow.tracking_uri=http://127.0.0.1:9", "logger.mlflow.timeout_s=2",
                           f"hydra.run.dir={run}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert proc.returncode == 2 and len(errors) == 1 and "no MLflow server answers" in errors[0], proc.stderr[-2000:]
    assert not Path(run / "checkpoints").exists() and not Path(run / "tensorboard").exists()
