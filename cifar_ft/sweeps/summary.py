"""Sweep summaries: `summary.csv` / `summary.md` / `summary.png` in a multirun directory.

Jobs that differ only in `seed` form a group; per group: n, mean ± std and a 95% interval (Student's t)
of the optimised metric and the test metrics, groups ranked by mean, with a note when the best two
intervals overlap (their difference is within the noise at this n). Written at the end of every
multirun (the `SweepSummary` Hydra callback, conf/train.yaml) and on demand, also for partial sweeps,
by `python -m cifar_ft.sweep SWEEP_DIR`.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path

import yaml
from hydra.experimental.callback import Callback

from cifar_ft.plain import read_data
from cifar_ft.reports.figures import read_scalars, sweep_figure
from cifar_ft.runs.resolvers import metric_mode
from cifar_ft.sweeps.study_view import study_markdown, study_states
from cifar_ft.trackers.config import MLFLOW_PARENT_FILE

COLUMNS = ["job", "status", "overrides", "val/acc_best", "test/acc", "test/f1_macro", "test/ece", "test/nll",
           "robustness/mean_acc", "robustness/drop", "epochs", "wall_time_s", "trainable_pct", "peak_memory_mb",
           "checkpoint_mb"]
TEST_METRICS = ["test/acc", "test/f1_macro"]
# two-sided 95% quantiles of Student's t, by degrees of freedom (the normal 1.96 beyond 30)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042}


def job_row(job_dir: Path) -> dict:
    """One job's row: its overrides and headline metrics, or `failed` with the error's last line."""
    overrides = read_data(job_dir / ".hydra" / "overrides.yaml", yaml.safe_load, list)
    row: dict = {"job": job_dir.name, "overrides": " ".join(o for o in overrides if isinstance(o, str))}
    metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
    if metrics_file.is_file():  # values read as data: only numbers (and the pruning facts) are used
        metrics = {k: v for k, v in read_data(metrics_file, json.loads, dict).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) or k == "pruned"}
        status = f"pruned after epoch {metrics.get('pruned_at_epoch')}" if metrics.get("pruned") else "ok"
        row.update({k: metrics.get(k) for k in COLUMNS[3:]}, status=status)
        row.update({k: v for k, v in metrics.items() if k.endswith("_best")})
    else:
        lines = error_file.read_text().strip().splitlines() if error_file.is_file() else []
        row["status"] = "failed: " + (lines[-1] if lines else "no metrics.json (killed?)")
    return row


def interval(values: list[float]) -> tuple[float, float, float]:
    """(mean, sample std, half-width of the 95% interval of the mean); std and width 0 for n = 1."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, 0.0, 0.0
    std = statistics.stdev(values)
    df = len(values) - 1
    t = T95[max(k for k in T95 if k <= df)] if df <= 30 else 1.96  # between entries: the wider (smaller df)
    return mean, std, t * std / math.sqrt(len(values))


def _sign(metric: str, mode: str | None = None) -> float:
    """-1 where smaller is better (`mode`, by default `metric_mode`: losses, errors, times), so ranking
    is by sign * value."""
    return -1.0 if (mode or metric_mode(metric)) == "min" else 1.0


def group_rows(rows: list[dict], metric: str, mode: str | None = None) -> list[dict]:
    """Jobs that differ only in `seed=...`, with n and mean/std/95% interval per metric, best first."""
    members: dict[str, list[dict]] = {}
    for r in rows:
        if r["status"] == "ok":
            key = " ".join(o for o in r["overrides"].split() if not o.startswith("seed=")) or "(defaults)"
            members.setdefault(key, []).append(r)
    groups = []
    for key, jobs in members.items():
        group = {"group": key, "n": len(jobs), "jobs": [j["job"] for j in jobs]}
        for name in (metric, *TEST_METRICS):
            values = [j[name] for j in jobs if isinstance(j.get(name), (int, float))]
            if values:
                group[name], group[f"{name} std"], group[f"{name} ci95"] = interval(values)
        groups.append(group)
    sign = _sign(metric, mode)
    return sorted(groups, key=lambda g: -sign * g.get(metric, sign * -math.inf))


def overlap_note(groups: list[dict], metric: str) -> str:
    if len(groups) < 2 or metric not in groups[1]:
        return ""
    a, b = groups[0], groups[1]
    if min(a["n"], b["n"]) < 2:
        return f"Only one seed per group: rank the groups with -m ... seeds=3 before trusting a {metric} difference."
    if abs(a[metric] - b[metric]) <= a[f"{metric} ci95"] + b[f"{metric} ci95"]:
        return (f"Note: the 95% intervals of the best two groups overlap ({a[metric]:.4f} ± {a[f'{metric} ci95']:.4f} "
                f"vs {b[metric]:.4f} ± {b[f'{metric} ci95']:.4f}): their difference is within the noise at this n.")
    return f"The best group's 95% interval does not overlap the second's ({metric})."


def summarize(sweep_dir: str | Path, metric: str = "val/acc_best", mode: str | None = None) -> list[dict]:
    """Write summary.csv / summary.md / summary.png sorted by `metric` (best first); returns the job rows."""
    sweep_dir = Path(sweep_dir)
    jobs = sorted((d for d in sweep_dir.iterdir() if d.is_dir() and d.name.isdigit()), key=lambda d: int(d.name))
    rows = [job_row(d) for d in jobs]
    live = study_states(sweep_dir)
    for r in rows:  # a study's trial still running elsewhere is not a failure
        if r["status"].startswith("failed: no metrics.json") and live.get(int(r["job"])) in ("RUNNING", "WAITING"):
            r["status"] = "running"
    common = set.intersection(*(set(r["overrides"].split()) for r in rows)) if len(rows) > 1 else set()
    for r in rows:  # show what differs between jobs; the shared overrides go in the header
        r["overrides"] = " ".join(o for o in r["overrides"].split() if o not in common)
    rows.sort(key=lambda r: -_sign(metric, mode) * r[metric] if isinstance(r.get(metric), (int, float))
              and math.isfinite(r[metric]) else math.inf)
    columns = COLUMNS + ([metric] if metric not in COLUMNS else [])
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    groups = group_rows(rows, metric, mode)
    (sweep_dir / "summary.md").write_text(_markdown(sweep_dir, rows, groups, columns, common, metric)
                                          + study_markdown(sweep_dir))
    if groups:
        curves = {g["group"]: [_val_curve(sweep_dir / j) for j in g["jobs"]] for g in groups}
        sweep_figure(groups, curves, metric).savefig(sweep_dir / "summary.png", dpi=110)
    return rows


def _val_curve(job: Path) -> list[float]:
    series = read_scalars(job / "tensorboard").get("val/acc", []) if (job / "tensorboard").is_dir() else []
    return [v for _, v in series if v == v]


def _markdown(sweep_dir: Path, rows: list[dict], groups: list[dict], columns: list[str], common: set,
              metric: str) -> str:
    best = next((r for r in rows if r["status"] == "ok"), None)
    lines = [f"# Sweep {sweep_dir}", "",
             f"Best job: {best['job']} ({best['overrides']}), {metric} = {best.get(metric)}" if best
             else "No job finished.", "", f"Common to all jobs: {' '.join(sorted(common)) or '(nothing)'}", ""]
    if groups:
        stats = [metric, *TEST_METRICS]
        lines += ["## Groups (jobs that differ only in seed), best mean first", "",
                  "| group | n | " + " | ".join(f"{m} mean ± std [95% interval]" for m in stats) + " |",
                  "|" + "---|" * (2 + len(stats))]
        for g in groups:
            cells = [_stat_cell(g, m, g["n"]) if m in g else "" for m in stats]
            lines.append(f"| {g['group']} | {g['n']} | " + " | ".join(cells) + " |")
        lines += ["", overlap_note(groups, metric), ""]
    lines += ["## Jobs", "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _stat_cell(group: dict, m: str, n: int) -> str:
    """mean ± std [95% interval]; with one run neither spread nor interval exist: n/a, not a zero width."""
    if n < 2:
        return f"{group[m]:.4f} ± n/a [n/a]"
    mean, half = group[m], group[f"{m} ci95"]
    return f"{mean:.4f} ± {group[f'{m} std']:.4f} [{mean - half:.4f}, {mean + half:.4f}]"


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value).replace("|", "/")


class SweepSummary(Callback):
    """Hydra callback: summarise the sweep directory when a multirun ends."""

    def __init__(self, metric: str = "val/acc_best", mode: str | None = None) -> None:
        self.metric, self.mode = metric, mode

    def on_multirun_end(self, config, **kwargs) -> None:
        rows = summarize(config.hydra.sweep.dir, self.metric, self.mode)
        print(f"Sweep summary: {config.hydra.sweep.dir}/summary.md ({len(rows)} jobs)")
        sweep = Path(config.hydra.sweep.dir)
        if (sweep / MLFLOW_PARENT_FILE).is_file():  # logger=mlflow: the summary goes on the sweep's parent run
            from cifar_ft.trackers.mlflow_tracker import close_parent

            close_parent(sweep, [sweep / name for name in ("summary.md", "summary.csv", "summary.png")])
