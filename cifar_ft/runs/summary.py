"""Sweep summaries: `summary.csv` and `summary.md` in a multirun directory, one row per job.

Written at the end of every multirun (the `SweepSummary` Hydra callback, conf/train.yaml) and on
demand, also for partial sweeps, by `python -m cifar_ft.sweep SWEEP_DIR`.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

COLUMNS = ["job", "status", "overrides", "val/acc_best", "test/acc", "test/f1_macro", "epochs", "wall_time_s"]


def job_row(job_dir: Path) -> dict:
    """One job's row: its overrides and headline metrics, or `failed` with the error's last line."""
    overrides_file = job_dir / ".hydra" / "overrides.yaml"
    overrides = ""
    if overrides_file.is_file():
        overrides = " ".join(yaml.safe_load(overrides_file.read_text()) or [])
    row: dict = {"job": job_dir.name, "overrides": overrides}
    metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text())
        row.update({k: metrics.get(k) for k in COLUMNS[3:]}, status="ok")
        row.update({k: v for k, v in metrics.items() if k.endswith("_best")})
    else:
        lines = error_file.read_text().strip().splitlines() if error_file.is_file() else []
        row["status"] = "failed: " + (lines[-1] if lines else "no metrics.json (killed?)")
    return row


def summarize(sweep_dir: str | Path, metric: str = "val/acc_best") -> list[dict]:
    """Write summary.csv / summary.md sorted by `metric` (best first); returns the rows."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    rows = [job_row(d) for d in jobs]
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # show what differs between jobs; the shared overrides go in the header
        r["overrides"] = " ".join(o for o in r["overrides"].split() if o not in common)

    def key(row: dict) -> float:
        value = row.get(metric)
        return -value if isinstance(value, (int, float)) and math.isfinite(value) else math.inf

    rows.sort(key=key)
    columns = COLUMNS + ([metric] if metric not in COLUMNS else [])
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    best = next((r for r in rows if r["status"] == "ok"), None)
    lines = [f"# Sweep {sweep_dir}", "",
             f"Best job: {best['job']} ({best['overrides']}), {metric} = {best.get(metric)}" if best
             else "No job finished.", "",
             f"Common to all jobs: {' '.join(sorted(common)) or '(nothing)'}", "",
             "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    (sweep_dir / "summary.md").write_text("\n".join(lines) + "\n")
    return rows


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value).replace("|", "/")


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep directory when a multirun ends."""

    def __init__(self, metric: str = "val/acc_best") -> None:
        self.metric = metric

    def on_multirun_end(self, config, **kwargs) -> None:
        rows = summarize(config.hydra.sweep.dir, self.metric)
        print(f"Sweep summary: {config.hydra.sweep.dir}/summary.csv ({len(rows)} jobs)")
