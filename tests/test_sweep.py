"""Hydra multirun: one directory per job, a failing job does not stop the others, summary files."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
