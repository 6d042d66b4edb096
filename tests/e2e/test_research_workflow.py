"""Research workflow: seeds with error bars, sweeps and Optuna searches that survive a kill, debug
presets, comparing runs."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from cifar_ft.runs.entry import expand_seeds
from cifar_ft.sweeps.summary import interval
from tests.conftest import FAST, ROOT

SMALL = ["experiment=smoke", "trainer.enable_progress_bar=false", "data.train_size=600", "data.val_size=100",
         "data.test_size=100"]


def command(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_ft.train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, **kwargs)


@pytest.mark.slow  # 6 runs: ~16 s
def test_seeds_are_grouped_with_mean_std_and_interval(tmp_path):
    sweep = tmp_path / "S"
    proc = command("-m", *SMALL, "optimizer.lr=3e-3,1e-2", "seeds=3", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = {d.name: json.loads((d / "metrics.json").read_text()) for d in sweep.iterdir() if d.name.isdigit()}
    assert len(jobs) == 6
    text = (sweep / "summary.md").read_text()
    for lr in ("0.003", "0.01"):
        mine = [m for name, m in jobs.items()
                if f"optimizer.lr={lr}" in (sweep / name / ".hydra" / "overrides.yaml").read_text()]
        assert len(mine) == 3 and sorted(m["seed"] for m in mine) == [0, 1, 2]
        for metric in ("val/acc_best", "test/acc"):
            mean, std, ci = interval([m[metric] for m in mine])
            assert std == pytest.approx(statistics.stdev([m[metric] for m in mine]))
            assert f"{mean:.4f} ± {std:.4f} [{mean - ci:.4f}, {mean + ci:.4f}]" in text
        assert f"| optimizer.lr={lr} | 3 |" in text
    with Image.open(sweep / "summary.png") as im:
        assert im.size[0] > 1000 and im.size[1] > 400 and len(set(im.convert("L").getdata())) > 20


def files(job: Path) -> dict[str, str]:
    return {str(p.relative_to(job)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(job.rglob("*"))
            if p.is_file()}


def kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    start = time.time()
    while not ready():
        assert proc.poll() is None and time.time() - start < timeout, "the sweep ended before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow  # a sweep run twice: ~20 s
def test_a_killed_sweep_rerun_finishes_only_what_is_missing(tmp_path):
    sweep = tmp_path / "S"
    args = [sys.executable, "-m", "cifar_ft.train", "-m", *SMALL, "trainer.max_epochs=4",
            "optimizer.lr=1e-3,2e-3,3e-3,4e-3", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kill_when(proc, lambda: (sweep / "1" / "metrics.json").is_file()
              and (sweep / "2" / "checkpoints" / "last.ckpt").is_file())
    assert not (sweep / "2" / "metrics.json").exists() and not (sweep / "3").exists()
    before = {job: files(sweep / job) for job in ("0", "1")}
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {job: files(sweep / job) for job in ("0", "1")} == before  # not retrained, untouched
    assert "resuming from" in (sweep / "2" / "train.log").read_text()  # job 3 went on from its checkpoint
    for job in ("2", "3"):
        assert json.loads((sweep / job / "metrics.json").read_text())["epochs"] == 4
    assert len((sweep / "summary.csv").read_text().strip().splitlines()) == 5  # header + 4 jobs, once each


@pytest.mark.slow  # a killed search and its re-run: ~27 s
def test_a_killed_optuna_search_resumes_to_its_trial_count(tmp_path):
    optuna = pytest.importorskip("optuna")
    sweep = tmp_path / "opt"
    args = [sys.executable, "-m", "cifar_ft.train", "-m", "hparams_search=optuna", *SMALL,
            "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    kill_when(proc, lambda: (sweep / "2").is_dir())  # trial 2 launched: trials 0 and 1 were told
    storage = f"sqlite:///{sweep}/optuna.db"
    done = [t for t in optuna.load_study(study_name="cifar_ft", storage=storage).trials if t.state.is_finished()]
    assert len(done) == 2
    again = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    trials = optuna.load_study(study_name="cifar_ft", storage=storage).trials
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    assert sorted(d.name for d in sweep.iterdir() if d.name.isdigit()) == ["0", "1", "2", "3"]


@pytest.mark.slow  # four whole commands
@pytest.mark.parametrize("preset", ["fdr", "overfit", "limit", "profiler"])
def test_debug_presets_run_and_write_nowhere_else(preset, tmp_path):
    run = tmp_path / "run"
    proc = command("experiment=smoke", f"debug={preset}", "trainer.enable_progress_bar=false", f"hydra.run.dir={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    if preset == "overfit":
        line = next(x for x in out.splitlines() if "overfit check:" in x)
        assert line.rstrip().endswith(": OK") and float(line.split("training loss ")[1].split()[0]) < 0.05
    if preset == "profiler":
        assert "FIT Profiler Report" in (run / "fit-profiler.txt").read_text()
    if preset == "limit":
        assert json.loads((run / "metrics.json").read_text())["global_step"] == 15  # 3 epochs of 5 batches


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_debug_presets_default_to_a_temporary_directory(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = command("experiment=smoke", "debug=fdr", "trainer.enable_progress_bar=false", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = list((tmp_path / "cifar_ft_debug" / "debug_fdr").iterdir())
    assert len(runs) == 1 and (runs[0] / "metrics.json").is_file()


@pytest.mark.slow  # 2 training runs: ~20 s
def test_compare_two_runs(tmp_path):
    runs = []
    for name, lr in (("a", "3e-3"), ("b", "1e-2")):
        runs.append(tmp_path / name)
        assert command(*FAST, f"optimizer.lr={lr}", f"hydra.run.dir={runs[-1]}").returncode == 0
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.sweep", *map(str, runs), "--out", str(tmp_path / "cmp")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| optimizer.lr | 0.003 | 0.01 |" in text
    accs = [json.loads((r / "metrics.json").read_text())["test/acc"] for r in runs]
    assert f"| test/acc | {accs[0]:.4f} | {accs[1]:.4f} |" in text
    with Image.open(tmp_path / "cmp" / "compare.png") as im:
        assert im.size[0] > 1000


def test_seeds_shortcut_expands_to_a_seed_sweep():
    assert expand_seeds(["-m", "seeds=3", "a=1"]) == ["-m", "a=1", "seed=0,1,2"]
    assert expand_seeds(["a=1"]) == ["a=1"]
    with pytest.raises(Exception, match="add -m"):
        expand_seeds(["seeds=2"])


def test_interval_uses_students_t_and_stays_conservative_between_table_entries():
    mean, std, ci = interval([0.80, 0.82, 0.84])
    assert (mean, round(std, 6)) == (pytest.approx(0.82), 0.02) and ci == pytest.approx(4.303 * 0.02 / 3 ** 0.5)
    values = [0.8 + 0.001 * i for i in range(12)]  # df 11: not in the table, the df-10 quantile is used
    assert interval(values)[2] == pytest.approx(2.228 * statistics.stdev(values) / 12 ** 0.5)
