"""python -m cifar_ft.bench <name> [options], a name of COMMANDS; see --help of each. Every bench appends its rows
to results/<name>.jsonl (`python -m cifar_ft.results` regenerates the results tables from them)."""
from __future__ import annotations

import importlib
import sys

# benchmark name -> module with main(argv)
COMMANDS = {"transfer": "cifar_ft.bench.transfer", "speed": "cifar_ft.bench.speed", "recipe": "cifar_ft.bench.recipe",
            "strategy": "cifar_ft.bench.strategy", "budget": "cifar_ft.bench.budget",
            "gpu": "cifar_ft.bench.gpu", "imports": "cifar_ft.bench.imports", "presets": "cifar_ft.bench.presets"}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m cifar_ft.bench {{{','.join(COMMANDS)}}} [--help]", file=sys.stderr)
        sys.exit(2)
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
