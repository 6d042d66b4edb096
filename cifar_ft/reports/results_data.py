"""Results as data: every bench appends its rows to `results/<bench>.jsonl`, each row with where and when it
was measured (machine, CPU flags, device, date, commit, command). The results tables of the README and the
docs are generated from these files (`reports/results_pages.py`), so no figure is typed by hand.

One JSON object per line, so a new run appends without rewriting history and a diff shows what changed.
"""
from __future__ import annotations

import datetime as dt
import json
import platform
import sys
from pathlib import Path
from typing import Any

from cifar_ft.reports.artifacts import git_commit

# the provenance keys every row carries, in the order tables show them
PROVENANCE = ("run", "date", "commit", "device", "machine", "cpu_flags", "command")
# CPU flags that change the figures (vector width, bf16 units); the rest of /proc/cpuinfo does not matter here
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_model() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("model name"))
        return line.split(":", 1)[1].strip()
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        line = next(x for x in Path("/proc/cpuinfo").read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    present = set(line.split(":", 1)[1].split())
    return " ".join(f for f in FLAGS if f in present)


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu x{_cores()}"


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def provenance(command: str) -> dict[str, Any]:
    """Where, when and how a bench measured: shared by every row of one bench run."""
    now = dt.datetime.now(dt.timezone.utc)
    commit = git_commit() or "unknown"
    return {"run": f"{now:%Y-%m-%dT%H:%M:%SZ}", "date": f"{now:%Y-%m-%d}", "commit": commit,
            "device": device_name(), "machine": cpu_model(), "cpu_flags": cpu_flags(), "command": command}


def bench_command(bench: str, argv: list[str]) -> str:
    """The command as typed, with the user's data path shown as DIR (`--data DIR`)."""
    shown = [("DIR" if i and argv[i - 1] == "--data" else a.split("=")[0] + "=DIR" if a.startswith("--data=")
              else a) for i, a in enumerate(argv)]
    return " ".join(["python -m cifar_ft.bench", bench, *shown])


def append_rows(results_dir: Path, bench: str, rows: list[dict], command: str | None = None) -> Path:
    """Append `rows` (one bench run) to `results_dir/<bench>.jsonl`, each with the run's provenance."""
    head = provenance(command or bench_command(bench, sys.argv[2:]))  # python -m cifar_ft.bench <bench> ...
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{bench}.jsonl"
    with path.open("a") as f:
        for row in rows:
            f.write(json.dumps({**head, **{k: v for k, v in row.items() if k not in PROVENANCE}}) + "\n")
    print(f"appended {len(rows)} row(s) to {path}; python -m cifar_ft.results regenerates the tables")
    return path


def read_rows(results_dir: Path) -> dict[str, list[dict]]:
    """bench name -> every row of `results_dir/<bench>.jsonl`, oldest first."""
    out: dict[str, list[dict]] = {}
    for path in sorted(results_dir.glob("*.jsonl")):
        lines = [x for x in path.read_text().splitlines() if x.strip()]
        out[path.stem] = [json.loads(x) for x in lines]
    return out


def latest_run(rows: list[dict]) -> list[dict]:
    """The rows of the newest run (by `run` time) of one bench."""
    if not rows:
        return []
    newest = max(r["run"] for r in rows)
    return [r for r in rows if r["run"] == newest]
