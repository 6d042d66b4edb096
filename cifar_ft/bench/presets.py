"""`python -m cifar_ft.bench presets --data DIR`: the ready presets run as a user runs them, timed end to end.

Each preset (`experiment=cpu_quick`, `experiment=cpu_transfer`; `--only` to choose) is one
`python -m cifar_ft.train experiment=X data.root=DIR` in a fresh process: wall seconds from start to exit
(load, train, validate, test), in reference seconds too (this machine's factor, `bench budget`), against the
preset's budget, with its validation accuracy and its accuracy on the test split held out of DIR. The rows go
to `results/presets.jsonl`, from which the README's results table is generated (`python -m cifar_ft.results`).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cifar_ft.bench.budget import BUDGETS_REF_S, REFERENCE_RATE, machine_rate
from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ("cpu_quick", "cpu_transfer")
COLUMNS = ["preset", "val_acc", "test_acc", "wall_s", "reference_s", "budget_reference_s", "within_budget"]


def run_preset(preset: str, root: str, out: Path) -> dict:
    """One preset, as a user runs it, in a fresh process; its figures."""
    cmd = [sys.executable, "-m", "cifar_ft.train", f"experiment={preset}", f"data.root={root}",
           "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    return {"preset": f"experiment={preset}", "val_acc": metrics.get("val/acc_best"),
            "test_acc": metrics.get("test/acc"), "wall_s": wall}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench presets", description=__doc__.split("\n")[0])
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--only", nargs="*", choices=PRESETS, help="presets to run (default: all)")
    ap.add_argument("--out", default="outputs/bench/presets")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    root, out = data_root(args.data), Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    factor = REFERENCE_RATE / machine_rate(out / "rate")  # seconds here per reference second
    rows = []
    for preset in args.only or PRESETS:
        row = run_preset(preset, root, out / preset)
        budget = BUDGETS_REF_S.get(f"experiment={preset}")
        row.update(reference_s=row["wall_s"] / factor, budget_reference_s=budget,
                   within_budget=None if budget is None else row["wall_s"] / factor <= budget,
                   seconds_per_reference_s=factor)
        rows.append(row)
        print(row, flush=True)
    print_table(rows, COLUMNS, f"Presets end to end ({factor:.3f} s here per reference second)")
    save_json(rows, out / "results.json")
    record("presets", rows, argv, args.results)
