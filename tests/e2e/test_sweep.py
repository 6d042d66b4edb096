"""Hydra multirun: one directory per job, a failing job does not stop the others, summary files."""
from __future__ import annotations

import csv
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # a 3-job multirun: ~24 s
def test_multirun_summary_with_a_failing_job(tmp_path):
    sweep = tmp_path / "S"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", "experiment=smoke",
                           "data.batch_size=32,100000", "optimizer.lr=1e-3,3e-4", f"hydra.sweep.dir={sweep}",
                           "trainer.enable_progress_bar=false", "data.train_size=600", "data.val_size=100",
                           "data.test_size=100"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 4
    ok = [r for r in rows if r["status"] == "ok"]
    failed = [r for r in rows if r["status"].startswith("failed")]
    assert len(ok) == 2 and len(failed) == 2
    assert all("data.batch_size=100000 is larger than the training set" in r["status"] for r in failed)
    assert all("data.batch_size=32" in r["overrides"] for r in ok)
    assert float(ok[0]["val/acc_best"]) >= float(ok[1]["val/acc_best"])  # sorted, best first
    for r in ok:
        assert (sweep / r["job"] / "metrics.json").is_file() and (sweep / r["job"] / ".hydra").is_dir()
    assert f"Best job: {ok[0]['job']}" in (sweep / "summary.md").read_text()
    # the summary can be regenerated on demand
    (sweep / "summary.csv").unlink()
    subprocess.run([sys.executable, "-m", "cifar_ft.sweep", str(sweep)], cwd=ROOT, check=True, timeout=120)
    assert len(list(csv.DictReader((sweep / "summary.csv").open()))) == 4


@pytest.mark.slow  # a 3-trial search: ~17 s
def test_optuna_search_three_trials_names_the_best(tmp_path):
    sweep = tmp_path / "opt"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", "hparams_search=optuna", "experiment=smoke",
                           "hydra.sweeper.n_trials=3", "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}",
                           "data.train_size=600", "data.val_size=100", "data.test_size=100"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    assert len({r["overrides"] for r in rows}) == 3  # three different trials
    assert all("optimizer.lr=" in r["overrides"] for r in rows)
    assert f"Best job: {rows[0]['job']}" in (sweep / "summary.md").read_text()
    assert (sweep / "optimization_results.yaml").is_file()


def test_one_gpu_per_job_and_slurm_launcher_compose():
    from hydra import compose, initialize_config_dir

    from cifar_ft.runs.resolvers import job_gpu
    from tests.conftest import CONF_DIR

    assert [job_gpu(n, 4)[0] for n in range(6)] == [0, 1, 2, 3, 0, 1]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=["hydra/launcher=submitit_slurm", "trainer=gpu_per_job",
                                                      "hydra.launcher.nodes=2"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher") and cfg.hydra.launcher.nodes == 2
    assert cfg.trainer.accelerator == "gpu"
