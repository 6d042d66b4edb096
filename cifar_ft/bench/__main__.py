"""python -m cifar_ft.bench {transfer,speed} [options]; see --help of each."""
from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in ("transfer", "speed"):
        print("usage: python -m cifar_ft.bench {transfer,speed} [--help]", file=sys.stderr)
        sys.exit(2)
    if argv[0] == "transfer":
        from cifar_ft.bench.transfer import main as run
    else:
        from cifar_ft.bench.speed import main as run
    run(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
