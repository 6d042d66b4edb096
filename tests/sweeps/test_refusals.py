"""A search that cannot work is refused in one line before its sweep directory is written: a storage URL
that is no RDB URL, a SQLite file that cannot be created, a PostgreSQL server that does not answer (within
a connect timeout), a search space that differs from the study's, a sampler that unpickles what it finds
in the storage."""
from __future__ import annotations

import time

import optuna
import pytest
from optuna.distributions import FloatDistribution, IntDistribution

from cifar_ft.errors import ConfigError
from cifar_ft.sweeps.storage import check_space, check_storage_url, make_storage, record_space
from cifar_ft.sweeps.sweeper import build_sampler


@pytest.mark.parametrize("url,named", [
    ("banana", "hydra.sweeper.storage='banana' is not valid; valid: an RDB URL of sqlite, postgresql, mysql"),
    ("redis://localhost/0", "is not valid; valid: an RDB URL"),
    ("sqlite://", "names no database file"),
])
def test_storage_urls_that_cannot_work_are_refused(url, named, tmp_path):
    with pytest.raises(ConfigError, match=named):
        check_storage_url(url, tmp_path / "sweep")
    assert not (tmp_path / "sweep").exists()


def test_an_sqlite_file_that_cannot_be_created_is_refused(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be created"):
        check_storage_url(f"sqlite:///{blocker}/optuna.db", tmp_path / "sweep")
    assert blocker.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]
    check_storage_url(f"sqlite:///{tmp_path}/new/folder/optuna.db", tmp_path / "sweep")  # creatable: fine
    assert not (tmp_path / "new").exists()


def test_a_postgresql_server_that_does_not_answer_is_refused_quickly(tmp_path):
    start = time.monotonic()
    with pytest.raises(ConfigError, match="cannot connect"):
        check_storage_url("postgresql+psycopg://postgres@127.0.0.1:1/postgres", tmp_path / "sweep")
    assert time.monotonic() - start < 30


def test_a_worker_with_another_search_space_is_refused_naming_the_parameter(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    ours = {"optimizer.lr": FloatDistribution(1e-5, 1e-2, log=True), "model.depth": IntDistribution(1, 4)}
    study = optuna.create_study(storage=make_storage(url, 10, 60, 1), study_name="s", direction="maximize")
    record_space(study, ours)
    check_space(url, "s", dict(ours))  # the same space joins
    check_space(url, "other", {"x": IntDistribution(0, 1)})  # another study: nothing to compare
    theirs = {**ours, "optimizer.lr": FloatDistribution(1e-4, 1e-1)}
    with pytest.raises(ConfigError, match=r"hydra.sweeper.params: optimizer.lr is FloatDistribution\(.*\) here but"):
        check_space(url, "s", theirs)
    with pytest.raises(ConfigError, match="model.depth is absent here"):
        check_space(url, "s", {"optimizer.lr": ours["optimizer.lr"]})


def test_a_study_made_before_the_space_was_recorded_is_compared_by_its_trials(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=url, study_name="s")
    study.add_trial(optuna.trial.create_trial(params={"lr": 0.1}, distributions={"lr": FloatDistribution(0, 1)},
                                              value=1.0))
    with pytest.raises(ConfigError, match="lr is CategoricalDistribution"):
        check_space(url, "s", {"lr": optuna.distributions.CategoricalDistribution([0.1, 0.2])})


def test_a_sampler_that_unpickles_the_storage_is_refused():
    with pytest.raises(ConfigError, match="CmaEsSampler is refused: it keeps its state as pickles"):
        build_sampler({"_target_": "optuna.samplers.CmaEsSampler"})
    assert isinstance(build_sampler({"_target_": "optuna.samplers.TPESampler", "seed": 0}), optuna.samplers.TPESampler)


def test_a_planted_search_space_in_the_storage_is_data_refused_in_one_line(tmp_path):
    url = f"sqlite:///{tmp_path}/optuna.db"
    study = optuna.create_study(storage=url, study_name="s")
    study.set_user_attr("cifar_ft:space", {"lr": {"_target_": "builtins.open", "file": str(tmp_path / "M"),
                                                   "mode": "w"}})
    with pytest.raises(ConfigError, match="records a search space cifar_ft cannot read"):
        check_space(url, "s", {"lr": FloatDistribution(0, 1)})
    assert not (tmp_path / "M").exists()


def _sweep(tmp_path, *args: str):
    import subprocess
    import sys

    from tests.conftest import ROOT

    return subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", "hparams_search=optuna", "experiment=smoke",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1",
                           "strategy.frozen_epochs=0", "data.train_size=100", "data.val_size=20", "data.test_size=20",
                           "trainer.enable_progress_bar=false", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("url,named", [("banana", "hydra.sweeper.storage='banana' is not valid"),
                                       ("postgresql+psycopg://postgres@127.0.0.1:1/x", "cannot connect")])
def test_a_search_with_a_bad_storage_is_one_line_and_writes_no_sweep_directory(tmp_path, url, named):
    proc = _sweep(tmp_path, f"hydra.sweeper.storage={url}")
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and named in lines[0], lines[-5:]
    assert not (tmp_path / "sweep").exists()


@pytest.mark.slow  # two searches of one trial each (~25 s)
def test_a_second_worker_with_another_space_is_one_line_and_changes_nothing(tmp_path):
    assert _sweep(tmp_path, 'hydra.sweeper.params={optimizer.lr:"tag(log, interval(1e-4, 1e-2))"}').returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*") if p.is_file()}
    proc = _sweep(tmp_path, "hydra.sweeper.n_trials=2", 'hydra.sweeper.params={optimizer.lr:"interval(1e-4, 1e-1)"}')
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, lines[-5:]
    assert "hydra.sweeper.params: optimizer.lr is FloatDistribution" in lines[0] and "in study 'cifar_ft'" in lines[0]
    assert {p: p.read_bytes() for p in (tmp_path / "sweep").rglob("*") if p.is_file()} == before


def test_a_trial_told_after_the_trials_were_read_is_not_taken_over(tmp_path):
    """Worker A tells its trial's result, then frees the trial's lock; worker B read the trials before that
    (RUNNING), finds the lock free and would take the finished trial over (Optuna: "Trial#5 has already
    finished and can not be updated"). B reads the state again once it holds the lock, and skips it."""
    from cifar_ft.sweeps.search import Worker
    from cifar_ft.sweeps.space import SearchSpace
    from cifar_ft.sweeps.storage import WORKER_ATTR, worker_id

    storage = make_storage(f"sqlite:///{tmp_path}/optuna.db", 10, 60, 1)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask({"lr": FloatDistribution(0, 1)})
    storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, f"{worker_id().split(':')[0]}:1")
    snapshot = study.get_trials(deepcopy=False)  # B reads: RUNNING
    study.tell(trial, 1.0)  # A finishes, then frees its lock (it never held one here)
    worker = Worker(study, storage, SearchSpace({"lr": FloatDistribution(0, 1)}, []), tmp_path, None, n_trials=2)
    assert worker.take_over(snapshot) == [] and trial.number not in worker.claims.held
