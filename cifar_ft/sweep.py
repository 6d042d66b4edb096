"""`python -m cifar_ft.sweep DIR [DIR ...]`: a sweep's summary, or a comparison of run directories.

One multirun directory (numbered job directories): (re)writes its summary.csv / summary.md /
summary.png, jobs grouped over seeds with error bars. Run directories (one or more, e.g. two
`outputs/train/<run>`): writes compare.md and compare.png into --out (default: outputs/compare)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cifar_ft.errors import UserError
from cifar_ft.sweeps.compare import compare
from cifar_ft.sweeps.summary import summarize


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.sweep", description=__doc__)
    ap.add_argument("dirs", nargs="+", help="a sweep directory, or run directories to compare")
    ap.add_argument("--metric", default="val/acc_best", help="what ranks a sweep's jobs and groups")
    ap.add_argument("--out", default="outputs/compare", help="where a comparison is written")
    args = ap.parse_args(argv)
    try:
        first = Path(args.dirs[0])
        if len(args.dirs) == 1 and first.is_dir() and any(d.name.isdigit() for d in first.iterdir() if d.is_dir()):
            rows = summarize(first, args.metric)
            print(f"{len(rows)} jobs summarised into {first}/summary.csv, summary.md and summary.png")
        else:
            print(compare(args.dirs, args.out))
            print(f"wrote {args.out}/compare.md and compare.png")
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
