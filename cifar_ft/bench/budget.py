"""`python -m cifar_ft.bench budget`: this machine's time budgets, in seconds, from reference seconds.

CPU models differ between machines, so the recipes' time targets are in reference seconds: seconds on
the machine where a plain fp32 PyTorch loop trains EfficientNet-Lite0 (genuine weights) at 64 px,
batch 64, at `REFERENCE_RATE` img/s (`bench speed --rows 5`, its "lite0@64 plain loop" row, on the
machine the README reports). Here that loop is timed the same way (fresh batches, the clock read at
logging steps, the faster of two passes), and each budget scales by reference rate / this rate.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from cifar_ft.bench.common import add_results_arg, print_table, record, save_json
from cifar_ft.bench.ddp_probe import synthetic_loader
from cifar_ft.bench.overhead import CASES
from cifar_ft.bench.speed_common import plain_loop_logged, prepared_model

REFERENCE_RATE = 247.6  # img/s: the lite0@64 plain loop on the README's reference machine
# recipe -> its whole-command target in reference seconds (docs/results: the presets' budgets)
BUDGETS_REF_S = {"experiment=cpu_transfer": 600.0, "experiment=cpu_quick": 150.0}


def machine_rate(out: Path) -> float:
    """This machine's lite0@64 plain-loop rate (img/s), as row 5 of `bench speed` measures it."""
    overrides, size, batch, steps = CASES["lite0@64"]
    net = prepared_model(overrides, out / "cfg")
    loader = synthetic_loader(steps + 1, batch, size)
    return max(plain_loop_logged(net, loader, steps), plain_loop_logged(net, loader, steps))


def budget_rows(rate: float) -> list[dict]:
    factor = REFERENCE_RATE / rate  # seconds here per reference second
    rows = [{"row": "lite0@64 b64 plain loop, this machine", "value": rate, "unit": "img/s"},
            {"row": "seconds here per reference second", "value": factor, "unit": "s/ref-s"}]
    return rows + [{"row": f"budget of {name}", "value": ref_s * factor, "unit": f"s here ({ref_s:.0f} ref-s)"}
                   for name, ref_s in BUDGETS_REF_S.items()]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench budget", description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="outputs/bench/budget")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    rows = budget_rows(machine_rate(Path(args.out)))
    print_table(rows, ["row", "value", "unit"], f"Time budgets on this machine (reference: {REFERENCE_RATE} img/s)")
    save_json(rows, Path(args.out) / "results.json")
    record("budget", rows, argv, args.results)
