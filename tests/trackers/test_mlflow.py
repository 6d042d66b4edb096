"""logger=mlflow against real stores: the default SQLite store beside the runs, and a real tracking server
(`bash .ci/mlflow start`; CI starts it). A run records its config, every TensorBoard scalar at the same steps,
its tags and files; a resumed run continues its MLflow run; a sweep is a parent run with a child per job; a
server that goes away mid-run costs the run nothing."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from cifar_ft.train import train
from tests.conftest import FAST, ROOT, make_cfg

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402

pytestmark = pytest.mark.command  # every test here trains a run


@pytest.fixture
def server() -> str:
    url = os.environ.get("CIFAR_FT_MLFLOW_URL", "http://127.0.0.1:55055")
    try:
        MlflowClient(url).search_experiments(max_results=1)
    except Exception as exc:  # noqa: BLE001
        how = f"no MLflow server at {url} ({type(exc).__name__}); start one with `bash .ci/mlflow start`"
        if os.environ.get("CI"):
            pytest.fail(how)
        pytest.skip(how)
    return url


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(params=["sqlite", "server"])
def store(request, tmp_path) -> tuple[str, list[str]]:
    """(the store's URI, the overrides that choose it): the default SQLite store beside the runs, a server."""
    if request.param == "sqlite":  # MLflow's current release, without MLFLOW_ALLOW_FILE_STORE
        assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ
        return f"sqlite:///{tmp_path / 'outputs' / 'mlflow.db'}", []
    url = request.getfixturevalue("server")
    return url, [f"logger.mlflow.tracking_uri={url}"]


def test_a_run_records_its_config_scalars_tags_and_files(tmp_path, store):
    uri, choose = store
    run_dir, experiment = tmp_path / "outputs" / "train" / "r1", f"content-{time.time_ns()}"
    cfg = make_cfg([*FAST, "trainer.max_epochs=2", "logger=[tensorboard,mlflow,csv]", *choose,
                    f"logger.mlflow.experiment_name={experiment}"], run_dir)
    train(cfg)
    (run,) = runs_of(uri, experiment)
    client = MlflowClient(uri)
    assert "val/acc" in (run_dir / "csv" / "metrics.csv").read_text().splitlines()[0]  # logger=csv's file
    assert run.info.status == "FINISHED" and run.data.params["model.backbone"] == "test_resnet"
    assert run.data.params["trainer.max_epochs"] == "2" and len(run.data.params) > 100
    assert {"strategy": "full", "backbone": "test_resnet", "seed": "42"}.items() <= run.data.tags.items()
    assert run.data.tags["git_commit"] and run.data.tags["state"] == "finished"
    for tag, points in tensorboard_scalars(run_dir).items():  # every scalar: same name, steps and values
        got = [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, tag)]
        assert [s for s, _ in got] == [s for s, _ in points], tag
        assert [v for _, v in got] == pytest.approx([v for _, v in points], rel=1e-6), tag
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "curves.png", "confusion_matrix.png", "model_card.md", "per_class.csv"} <= files
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["trackers"] == {"mlflow": run.info.run_id}


def test_a_run_stopped_mid_run_and_resumed_is_one_mlflow_run_whose_steps_continue(tmp_path, server):
    """A training process stopped by SIGTERM (pre-emption: it saves last.ckpt and exits), then resumed."""
    experiment, run_dir = f"killed-{time.time_ns()}", tmp_path / "r"
    common = [*FAST, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={server}",
              f"logger.mlflow.experiment_name={experiment}", "trainer.max_epochs=3", "strategy.frozen_epochs=0"]
    proc = subprocess.Popen([sys.executable, "-m", "cifar_ft.train", *common, f"hydra.run.dir={run_dir}"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    client, t0 = MlflowClient(server), time.time()
    while not (run_dir / "checkpoints" / "last.ckpt").is_file():  # after the first epoch
        assert proc.poll() is None and time.time() - t0 < 300, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    os.killpg(proc.pid, 15)
    proc.wait(timeout=120)
    (first,) = runs_of(server, experiment)
    before = [m.step for m in client.get_metric_history(first.info.run_id, "train/loss")]
    train(make_cfg([*common, "ckpt_path=last"], run_dir))
    (run,) = runs_of(server, experiment)  # one MLflow run, not one per attempt
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    assert steps[:len(before)] == before and max(steps) > max(before)


def test_a_resumed_run_continues_its_mlflow_run_on_a_server(tmp_path, server):
    experiment = f"resume-{tmp_path.name}-{time.time_ns()}"
    common = [*FAST, "logger=[tensorboard,mlflow]", f"logger.mlflow.tracking_uri={server}",
              f"logger.mlflow.experiment_name={experiment}"]
    client = MlflowClient(server)
    train(make_cfg([*common, "trainer.max_epochs=1"], tmp_path / "r"))
    (first,) = runs_of(server, experiment)
    before = [m.step for m in client.get_metric_history(first.info.run_id, "val/acc")]
    train(make_cfg([*common, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path / "r"))
    (run,) = runs_of(server, experiment)  # one MLflow run, not one per attempt
    steps = [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")]
    assert run.info.run_id == first.info.run_id and steps[:len(before)] == before and len(steps) > len(before)
    assert steps == sorted(set(steps)) and run.data.tags["resumed.trainer.max_epochs"] == "2"
    assert run.data.params["trainer.max_epochs"] == "1"  # the first value stays: MLflow params do not change


def test_a_sweep_is_one_parent_run_with_a_child_per_job(tmp_path, store):
    uri, choose = store
    sweep, experiment = tmp_path / "outputs" / "multirun", f"sweep-{time.time_ns()}"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", *FAST, "trainer.max_epochs=1",
                           "logger=[tensorboard,mlflow]", *choose, f"logger.mlflow.experiment_name={experiment}",
                           "optimizer.lr=1e-3,3e-3", f"hydra.sweep.dir={sweep}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = runs_of(uri, experiment)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2 and parents[0].info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert sorted(r.data.tags["trial"] for r in children) == ["0", "1"]
    assert all(float(r.data.tags["objective"]) >= 0 and r.data.tags["state"] == "finished" for r in children)
    client = MlflowClient(uri)
    assert {"summary.md", "summary.csv"} <= {a.path for a in client.list_artifacts(parents[0].info.run_id)}


@pytest.mark.slow  # two Optuna worker processes on one study: ~30 s
def test_a_two_worker_optuna_search_is_one_parent_run_with_a_child_per_trial(tmp_path, server):
    experiment, sweep = f"search-{time.time_ns()}", tmp_path / "S"
    cmd = [sys.executable, "-m", "cifar_ft.train", "-m", "hparams_search=optuna", *FAST, "trainer.max_epochs=1",
           "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}", "logger=[tensorboard,mlflow]",
           f"logger.mlflow.tracking_uri={server}", f"logger.mlflow.experiment_name={experiment}"]
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()[-3000:]
    runs = runs_of(server, experiment)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and sorted(r.data.tags["trial"] for r in children) == ["0", "1"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_server_that_goes_away_mid_run_costs_the_run_nothing_and_is_said_once(tmp_path, caplog):
    """A real server of this test's own, stopped once the run's first checkpoint is written."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                               "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'srv.db'}",
                               "--artifacts-destination", str(tmp_path / "artifacts")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                MlflowClient(url).search_experiments(max_results=1)
                break
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.5)
        from lightning.pytorch.callbacks import Callback

        class StopServer(Callback):
            def on_train_epoch_end(self, trainer, pl_module):
                if trainer.current_epoch == 0:
                    os.killpg(server.pid, 15)
                    server.wait(timeout=30)

        cfg = make_cfg([*FAST, "trainer.max_epochs=2", "logger=[tensorboard,mlflow]",
                        f"logger.mlflow.tracking_uri={url}", "logger.mlflow.timeout_s=2"], tmp_path / "r")
        from cifar_ft.runs import build

        original = build.build_trainer
        build_trainer = lambda tc, cbs, *a, **k: original(tc, [*cbs, StopServer()], *a, **k)  # noqa: E731
        import cifar_ft.runs.fit as fit

        fit.build_trainer = build_trainer
        try:
            with caplog.at_level("WARNING", logger="cifar_ft"):
                train(cfg)
        finally:
            fit.build_trainer = original
    finally:
        if server.poll() is None:
            os.killpg(server.pid, 9)
    said = [r.getMessage() for r in caplog.records if "logger=mlflow" in r.getMessage()]
    assert len(said) == 1 and "run goes on" in said[0]
    out = tmp_path / "r"
    assert (out / "metrics.json").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    assert any((out / "tensorboard").iterdir())
