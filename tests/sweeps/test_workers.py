"""The Optuna sweeper as users run it: K workers on one study, a worker killed mid-trial, a lost node
(stale heartbeat), pruning, DDP trials. Synthetic data, tiny model, SQLite in the sweep directory."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc
import torch

from cifar_ft.sweeps.storage import WORKER_ATTR
from tests.conftest import ROOT

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
SMALL = ["experiment=smoke", "trainer.enable_progress_bar=false", "data.train_size=600", "data.val_size=100",
         "data.test_size=100"]


def search(sweep: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "cifar_ft.train", "-m", "hparams_search=optuna", *SMALL, f"hydra.sweep.dir={sweep}",
            *args]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def finish(procs: list[subprocess.Popen], logs: list[Path], timeout: float = 600) -> None:
    for p, log in zip(procs, logs):
        assert p.wait(timeout=timeout) == 0, log.read_text()[-3000:]


def trials(storage: str, name: str = "cifar_ft") -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=storage).trials


def wait_for(ready, procs: list[subprocess.Popen], timeout: float = 300) -> None:
    t0 = time.time()
    while not ready():
        assert all(p.poll() is None for p in procs) and time.time() - t0 < timeout, "workers ended too early"
        time.sleep(0.1)


def two_workers_share_one_study(tmp_path: Path, storage: str | None = None, study: str = "cifar_ft") -> None:
    sweep = tmp_path / "S"
    extra = [f"hydra.sweeper.storage={storage}", f"hydra.sweeper.study_name={study}"] if storage else []
    cmd = search(sweep, "hydra.sweeper.n_trials=6", *extra)
    logs = [tmp_path / f"w{i}.log" for i in (0, 1)]
    finish([start(cmd, log) for log in logs], logs)
    done = trials(storage or f"sqlite:///{sweep}/optuna.db", study)
    assert [t.number for t in done] == list(range(6)) and all(t.state.name == "COMPLETE" for t in done)
    assert sorted(d.name for d in sweep.iterdir() if d.name.isdigit()) == [str(n) for n in range(6)]
    workers = {t.system_attrs[WORKER_ATTR] for t in done}
    assert len(workers) == 2  # both took part
    for t in done:  # job directory N holds trial N, with trial N's sampled values
        config = (sweep / str(t.number) / ".hydra" / "overrides.yaml").read_text()
        assert f"optimizer.lr={t.params['optimizer.lr']!r}" in config
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    view = json.loads((sweep / "study.json").read_text())
    assert view["states"] == {"COMPLETE": 6} and len(view["trials"]) == 6


@pytest.mark.slow  # two worker processes, one study: ~20 s
def test_two_workers_share_one_sqlite_study(tmp_path):
    two_workers_share_one_study(tmp_path)
    sweep = tmp_path / "S"
    for name in ("optimization_history.png", "param_importances.png", "optimization_results.yaml"):
        assert (sweep / name).is_file(), name
    assert "## Optuna study `cifar_ft` (maximize)" in (sweep / "summary.md").read_text()


@pytest.mark.slow  # two workers, one killed: ~23 s
def test_a_killed_worker_trial_is_taken_over_and_resumed(tmp_path):
    sweep = tmp_path / "S"
    storage = f"sqlite:///{sweep}/optuna.db"
    cmd = search(sweep, "hydra.sweeper.n_trials=4", "trainer.max_epochs=4")
    logs = [tmp_path / f"w{i}.log" for i in (0, 1)]
    procs = [start(cmd, log) for log in logs]

    def victim() -> tuple[int, int] | None:  # a running trial with a checkpoint: (its number, its worker's pid)
        if not (sweep / "optuna.db").is_file():
            return None
        try:
            running = trials(storage)
        except KeyError:  # the database is there, the study not yet
            return None
        except sqlalchemy.exc.OperationalError:  # a worker is creating the tables as we read: look again
            return None
        for t in running:
            if t.state.name == "RUNNING" and (sweep / str(t.number) / "checkpoints" / "last.ckpt").is_file():
                return t.number, int(t.system_attrs[WORKER_ATTR].split(":")[1])
        return None
    found: list[tuple[int, int]] = []
    wait_for(lambda: found.append(victim()) or found[-1] is not None, procs)
    number, pid = found[-1]
    killed = next(p for p in procs if p.pid == pid)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    assert trials(storage)[number].state.name == "RUNNING"  # killed mid-trial, not just after it
    live = [p for p in procs if p is not killed]
    finish(live, [logs[procs.index(p)] for p in live])
    done = trials(storage)
    assert len(done) == 4 and all(t.state.name == "COMPLETE" for t in done)  # the killed trial kept its number
    assert "resuming from" in (sweep / str(number) / "train.log").read_text()
    assert json.loads((sweep / str(number) / "metrics.json").read_text())["epochs"] == 4
    assert f"trial {number} lost its worker" in logs[procs.index(live[0])].read_text()


@pytest.mark.slow  # sweeps of several processes: ~20 s
def test_a_trial_of_a_lost_node_is_retried_after_its_heartbeat_goes_stale(tmp_path):
    sweep = tmp_path / "S"
    storage = f"sqlite:///{sweep}/optuna.db"
    beats = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=3"]
    cmd = search(sweep, "hydra.sweeper.n_trials=2", "trainer.max_epochs=4", *beats)
    log = tmp_path / "w0.log"
    proc = start(cmd, log)
    wait_for(lambda: (sweep / "0" / "checkpoints" / "last.ckpt").is_file(), [proc])
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    study = optuna.load_study(study_name="cifar_ft", storage=storage)
    lost = study.trials[0]
    study._storage.set_trial_system_attr(lost._trial_id, WORKER_ATTR, "another-node:1")  # not ours to unlock
    proc = start(cmd, tmp_path / "w1.log")
    finish([proc], [tmp_path / "w1.log"])
    done = trials(storage)
    states = [t.state.name for t in done]
    assert states.count("COMPLETE") == 2 and states[0] == "FAIL"  # lost, then retried as a new trial
    retry = next(t for t in done if t.system_attrs.get("retry_history") == [0])
    assert retry.state.name == "COMPLETE" and retry.params == lost.params
    assert "resuming from" in (sweep / "0" / "train.log").read_text()  # in trial 0's directory, from its checkpoint
    fresh = sorted(str(t.number) for t in done if not t.system_attrs.get("retry_history"))
    assert sorted(d.name for d in sweep.iterdir() if d.name.isdigit()) == fresh  # a retry has no directory of its own


@pytest.mark.slow  # a pruned search: ~26 s
def test_median_pruner_stops_a_hopeless_trial_after_its_first_epoch(tmp_path):
    sweep = tmp_path / "S"
    learnable = ["data.noise=0.1", "strategy.frozen_epochs=0", "trainer.max_epochs=3", "~hydra.sweeper.params",
                 "hydra.sweeper.pruner=median", "hydra.sweeper.pruner_args.n_startup_trials=1"]
    good = subprocess.run(search(sweep, *learnable, "hydra.sweeper.n_trials=1", "optimizer.lr=3e-2"), cwd=ROOT,
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert good.returncode == 0, good.stderr[-3000:]
    bad = subprocess.run(search(sweep, *learnable, "hydra.sweeper.n_trials=2", "optimizer.lr=1e-9"), cwd=ROOT,
                         env=ENV, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 0, bad.stderr[-3000:]
    first, second = trials(f"sqlite:///{sweep}/optuna.db")
    assert first.state.name == "COMPLETE" and sorted(first.intermediate_values) == [0, 1, 2]
    assert second.state.name == "PRUNED" and sorted(second.intermediate_values) == [0]
    metrics = json.loads((sweep / "1" / "metrics.json").read_text())
    assert metrics["pruned"] and metrics["pruned_at_epoch"] == 0 and metrics["epochs"] == 1
    assert (sweep / "1" / "checkpoints" / "last.ckpt").is_file() and not (sweep / "1" / "per_class.csv").exists()
    row = next(r for r in csv.DictReader((sweep / "summary.csv").open()) if r["job"] == "1")
    assert row["status"] == "pruned after epoch 0"


@pytest.mark.slow  # sweeps of several processes: ~20 s
def test_ddp_trial_ranks_train_with_the_same_sampled_values(tmp_path):
    sweep = tmp_path / "S"
    cmd = search(sweep, "trainer=ddp_cpu", "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=median",
                 "+callbacks.dump._target_=tests.helpers.DumpBackbone", "+callbacks.dump.path=${paths.output_dir}")
    proc = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = trials(f"sqlite:///{sweep}/optuna.db")
    assert len(done) == 2 and all(t.state.name == "COMPLETE" for t in done)  # rank 1 asked for nothing
    assert done[0].params != done[1].params
    assert all(sorted(t.intermediate_values) == [0, 1] for t in done)  # rank 0 reported each epoch, once
    for t in done:
        job = sweep / str(t.number)
        assert (job / "train_ddp_process_1.log").is_file()  # rank 1 ran this trial's job
        ranks = [torch.load(job / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        for key, value in ranks[0].items():  # another learning rate on rank 1 would have made them differ
            assert torch.equal(value, ranks[1][key]), key


@pytest.mark.slow  # sweeps of several processes: ~20 s
def test_multi_objective_study_keeps_a_pareto_front(tmp_path):
    sweep = tmp_path / "S"
    proc = subprocess.run(search(sweep, "hydra.sweeper.n_trials=2", "hydra.sweeper.direction=[maximize,minimize]",
                                 "hydra.sweeper.objectives=[val/acc_best,fit_time_s]"),
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = trials(f"sqlite:///{sweep}/optuna.db")
    for t in done:
        metrics = json.loads((sweep / str(t.number) / "metrics.json").read_text())
        assert t.values == [metrics["val/acc_best"], metrics["fit_time_s"]]
    assert (sweep / "pareto_front.png").is_file()
    assert json.loads((sweep / "study.json").read_text())["directions"] == ["maximize", "minimize"]


@pytest.mark.slow  # sweeps of several processes: ~20 s
def test_a_trial_that_fails_on_its_own_is_recorded_and_rerun_only_when_asked(tmp_path):
    sweep = tmp_path / "S"
    cmd = search(sweep, "hydra.sweeper.n_trials=2", "data.batch_size=100000")
    first = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    storage = f"sqlite:///{sweep}/optuna.db"
    done = trials(storage)
    assert [t.state.name for t in done] == ["FAIL", "FAIL"]
    assert all("data.batch_size=100000 is larger than the training set" in t.user_attrs["error"] for t in done)
    again = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and len(trials(storage)) == 2  # failed on their own: not retried
    rerun = subprocess.run([*cmd, "sweep.rerun_failed=true"], cwd=ROOT, env=ENV, capture_output=True, text=True,
                           timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    later = trials(storage)[2:]
    assert sorted(t.system_attrs["cifar_ft:rerun_of"] for t in later) == [0, 1]  # once each, in their directories
    assert sorted(d.name for d in sweep.iterdir() if d.name.isdigit()) == ["0", "1"]


@pytest.fixture
def postgres_url() -> str:
    url = os.environ.get("CIFAR_FT_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:54329/postgres")
    try:
        optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"connect_timeout": 5}})
    except Exception as exc:  # noqa: BLE001
        how = (f"no PostgreSQL server at {url} ({str(exc).splitlines()[0]}); start one with `bash .ci/postgres "
               "start` (or set CIFAR_FT_POSTGRES_URL)")
        if os.environ.get("CI"):
            pytest.fail(how)
        pytest.skip(how)
    return url


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_two_workers_share_one_postgresql_study(tmp_path, postgres_url):
    two_workers_share_one_study(tmp_path, postgres_url, study=f"test-{os.getpid()}-{time.time_ns()}")
