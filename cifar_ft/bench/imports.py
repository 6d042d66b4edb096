"""`python -m cifar_ft.bench imports [--against DIR] [--rounds N]`: what a user waits for before anything runs.

Times, as whole processes (start-up and imports included), `python -m cifar_ft.train --help`, a one-line config
error (`data.batch_size=0`) and `python -m cifar_ft.check experiment=smoke`, in this checkout and, with
`--against DIR`, in another one (e.g. `git worktree add DIR <commit>`), alternated round by round so that both
see the same machine; prints each command's minimum and median per checkout and their ratio."""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cifar_ft.bench.common import add_results_arg, print_table, record, save_json

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {
    "train --help": ["cifar_ft.train", "--help"],
    "one-line config error": ["cifar_ft.train", "data.batch_size=0"],
    "check experiment=smoke": ["cifar_ft.check", "experiment=smoke"],
}


def timed(tree: Path, args: list[str]) -> float | None:
    """Seconds of one process in `tree` (its own cifar_ft first on the path); None if it has no such module."""
    if not (tree / Path(*args[0].split("."))).with_suffix(".py").is_file():
        return None
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", *args], cwd=tree, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench imports", description=__doc__)
    ap.add_argument("--against", help="another checkout to compare with (a worktree of an earlier commit)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="outputs/bench/imports")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    trees = {"this": ROOT, **({"against": Path(args.against).resolve()} if args.against else {})}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name, command in COMMANDS.items():
            for tree, path in trees.items():
                seconds = timed(path, command)
                if seconds is not None:
                    times.setdefault((name, tree), []).append(seconds)
    rows = []
    for name in COMMANDS:
        row: dict = {"command": name}
        for tree in trees:
            got = times.get((name, tree))
            row[f"{tree} min s"] = min(got) if got else None
            row[f"{tree} median s"] = statistics.median(got) if got else None
        if row.get("against median s") and row.get("this median s"):
            row["against / this"] = row["against median s"] / row["this median s"]
        rows.append(row)
    columns = ["command", *(f"{t} {s} s" for t in trees for s in ("min", "median")),
               *(["against / this"] if "against" in trees else [])]
    print_table(rows, columns, f"Seconds before anything runs ({args.rounds} rounds, alternated)")
    save_json(rows, Path(args.out) / "results.json")
    record("imports", rows, argv, args.results)
