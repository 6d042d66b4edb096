"""`python -m cifar_ft.sweep SWEEP_DIR [--metric val/acc_best]`: (re)write a sweep's summary.csv/.md."""
from __future__ import annotations

import argparse

from cifar_ft.runs.summary import summarize


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.sweep", description=__doc__)
    ap.add_argument("sweep_dir")
    ap.add_argument("--metric", default="val/acc_best")
    args = ap.parse_args()
    rows = summarize(args.sweep_dir, args.metric)
    print(f"{len(rows)} jobs summarised into {args.sweep_dir}/summary.csv and summary.md")


if __name__ == "__main__":
    main()
