"""`python -m cifar_ft.bench recipe`: which fine-tuning knobs matter, measured on real images.

EfficientNet-Lite0 (genuine ImageNet weights) on a split of the real CIFAR-10 training JPEGs, at a
CPU-affordable scale: one knob at a time against a baseline (64 px, 12,000 training images, one
epoch of full fine-tuning, AdamW). Every row is one full training run (`python -m cifar_ft.train
experiment=cpu_transfer ...`); settings are compared on its validation split (`val/acc_best`), the
held-out test split of the data is reported beside it, and TTA is compared on the baseline's own
checkpoint. Prints the table, writes results.json and recipe.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json
from cifar_ft.strategies.precision import cpu_bf16_units

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ["model.input_size=64", "data.max_train_images=12000", "data.val_size=2500", "data.test_size=2000",
            "trainer.max_epochs=1", "strategy.frozen_epochs=0", "optimizer.lr=1e-3",
            "model.backbone_lr_mult=1.0", "data.augment=basic", "data.pad_fraction=0.125",
            "data.passes_per_epoch=1", "scheduler.warmup_steps=30",
            # full fine-tuning from a random head, whatever experiment=cpu_transfer chooses; a row's strategy=X
            # comes later and wins (strategy=partial rows set its groups and precision: cpu_transfer's own
            # options for partial would apply otherwise)
            "strategy=full", "callbacks=default"]
PARTIAL_6 = ["strategy=partial", "strategy.frozen_groups=6", "strategy.frozen_precision=fp32"]
PARTIAL_4 = ["strategy=partial", "strategy.frozen_groups=4", "strategy.frozen_precision=fp32"]
# knob -> (setting as shown, overrides on top of the baseline)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "baseline": ("64 px, 12k images, 1 epoch, AdamW lr 1e-3 everywhere", []),
    "lr 5e-4": ("AdamW lr 5e-4", ["optimizer.lr=5e-4"]),
    "lr 2e-3": ("AdamW lr 2e-3", ["optimizer.lr=2e-3"]),
    "backbone_lr_mult": ("0.3 (head 1e-3, backbone 3e-4)", ["model.backbone_lr_mult=0.3"]),
    "optimizer": ("SGD, momentum 0.9, nesterov, lr 0.05", ["optimizer=sgd", "optimizer.lr=0.05",
                                                            "optimizer.weight_decay=5e-5"]),
    "layer decay": ("model.layer_decay=0.8", ["model.layer_decay=0.8"]),
    "EMA": ("callbacks.ema.decay=0.998 (warmup)", ["callbacks=[default,ema]", "callbacks.ema.decay=0.998"]),
    "freeze epochs": ("1 frozen epoch (cached) + 1 fine-tuning", ["trainer.max_epochs=2",
                                                                 "strategy.frozen_epochs=1"]),
    "epochs 2": ("2 epochs of fine-tuning", ["trainer.max_epochs=2"]),
    "passes 1.5": ("1.5 passes in one epoch (data.passes_per_epoch=1.5)", ["data.passes_per_epoch=1.5"]),
    "resolution": ("96 px", ["model.input_size=96"]),
    "no augmentation": ("none", ["data.augment=none"]),
    "random erasing": ("basic + random erasing 0.25", ["data.random_erasing=0.25"]),
    "flip only": ("flip only (data.pad_fraction=0, the presets' choice)", ["data.pad_fraction=0"]),
    "label smoothing": ("0.0", ["model.label_smoothing=0.0"]),
    # time-to-accuracy levers: FixRes, a compiled step, a larger backbone at the same size
    "test at 80 px": ("validate and test at 80 px (FixRes; trained at 64)", ["model.test_input_size=80"]),
    "test at 96 px": ("validate and test at 96 px (trained at 64)", ["model.test_input_size=96"]),
    "compile": ("model.compile=true (inductor's C++ backend; compile time counted)", ["model.compile=true"]),
    "backbone lite1": ("EfficientNet-Lite1 at 64 px", ["model=efficientnet_lite1_offline"]),
    "backbone lite2": ("EfficientNet-Lite2 at 64 px", ["model=efficientnet_lite2_offline"]),
    # partial fine-tuning: no backward pass through the stem and first three stages (Lite0's 6 groups)
    "partial 6 frozen": ("strategy=partial (first 6 layer groups frozen, ImageNet BatchNorm statistics)",
                         PARTIAL_6),
    "partial 6 bn": ("strategy=partial strategy.bn_statistics=adapt (frozen groups' BatchNorm adapts)",
                     [*PARTIAL_6, "strategy.bn_statistics=adapt"]),
    "partial 4 bn 1.4 passes": ("the stem and first 3 blocks frozen, BatchNorm adapting, 1.4 passes (time saved)",
                                [*PARTIAL_4, "strategy.bn_statistics=adapt",
                                 "data.passes_per_epoch=1.4"]),
    "partial 4 frozen": ("the stem and first 3 blocks frozen, ImageNet's statistics (a former cpu_transfer choice)",
                         PARTIAL_4),
    # the LR decay a cut-short run prefers (Li et al., 2020), and fewer backward passes (Jiang et al., 2019)
    "schedule": ("linear decay to zero (scheduler=linear)", ["scheduler=linear"]),
    "selective backprop": ("backward on the hardest half of each batch (model.backprop_fraction=0.5)",
                           ["model.backprop_fraction=0.5"]),
    "selective backprop 1.4 passes": ("the hardest half, over 1.4 passes (+ data.passes_per_epoch=1.4)",
                                      ["model.backprop_fraction=0.5", "data.passes_per_epoch=1.4"]),
    # BatchNorm statistics recomputed with the final weights (Wu & Johnson, 2021); small images early, the
    # time they save spent on passes (progressive resizing, as FFCV and fast.ai schedule it)
    "precise bn": ("callbacks.precise_bn.images=4096 before each validation", ["callbacks=[default,precise_bn]",
                                                                               "callbacks.precise_bn.images=4096"]),
    "progressive resize": ("48 px for the first 35 % of steps, then 64; the time saved spent on 1.15 passes",
                           ["callbacks=[default,progressive_resize]", "callbacks.progressive_resize.start_size=48",
                            "callbacks.progressive_resize.end_fraction=0.7", "data.passes_per_epoch=1.15"]),
    # LP-FT's probe in seconds (Kumar et al., 2022): the fresh head fitted to the features before the first step
    "probe head": ("callbacks.probe_head.images=2048: logistic regression on 2048 images' features first",
                   ["callbacks=[default,probe_head]", "callbacks.probe_head.images=2048"]),
}
# rows run only where this CPU has bf16 units (bf16 elsewhere is emulated, and slower)
BF16_ROWS: dict[str, tuple[str, list[str]]] = {
    "bf16": ("bf16 autocast (this CPU has bf16 units)", ["trainer.precision=bf16-mixed"]),
    "frozen bf16 4": ("row `partial 4 frozen` with the frozen blocks' forward in bf16 (strategy.frozen_precision=bf16)",
                    ["strategy=partial", "strategy.frozen_groups=4", "strategy.frozen_precision=bf16"]),
    "frozen bf16 5": ("the stem and first 4 blocks frozen, their forward in bf16 (experiment=cpu_transfer's choice)",
                     ["strategy=partial", "strategy.frozen_groups=5", "strategy.frozen_precision=bf16"]),
}


def variants() -> dict[str, tuple[str, list[str]]]:
    """VARIANTS, plus the bf16 rows where this CPU has bf16 units."""
    return {**VARIANTS, **BF16_ROWS} if cpu_bf16_units() else dict(VARIANTS)


def run(root: str, out: Path, overrides: list[str]) -> dict:
    """One training run; its metrics.json plus wall time."""
    if not (out / "metrics.json").is_file():
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "cifar_ft.train", "experiment=cpu_transfer", f"data.root={root}",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={out}", *BASELINE, *overrides]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    metrics = json.loads((out / "metrics.json").read_text())
    return {**metrics, "wall_s": float((out / "wall_s.txt").read_text())}


def evaluate_tta(root: str, ckpt: str, out: Path) -> float:
    if not (out / "metrics.json").is_file():
        subprocess.run([sys.executable, "-m", "cifar_ft.eval", f"ckpt_path={ckpt}", "data=image_folder",
                        f"data.root={root}", "data.val_size=2500", "data.test_size=2000", "data.max_train_images=12000",
                        "tta=none", "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"],
                       cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads((out / "metrics.json").read_text())["test/acc"]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench recipe", description=__doc__)
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--out", default="outputs/bench/recipe")
    ap.add_argument("--only", nargs="*", help="knobs to run (default: all)")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    root, out = data_root(args.data), Path(args.out)
    rows, base = [], None
    if not cpu_bf16_units():
        print("bf16: not run (this CPU has no avx512_bf16 or amx_bf16 flag: bf16 would be emulated)", flush=True)
    for knob, (setting, overrides) in variants().items():
        if args.only and knob not in args.only and knob != "baseline":
            continue
        m = run(root, out / f"{knob.replace(' ', '_')}_{len(rows)}", overrides)
        base = base or m
        rows.append({"knob": knob, "setting": setting, "val_acc": m["val/acc_best"],
                     "delta_val": m["val/acc_best"] - base["val/acc_best"], "test_acc": m["test/acc"],
                     "wall_s": m["wall_s"]})
        print(rows[-1], flush=True)
    # the baseline (cpu_transfer) tests with flip TTA: its checkpoint tested without it shows what TTA adds
    plain = evaluate_tta(root, base["best_ckpt"], out / "tta_none")
    rows.append({"knob": "TTA", "setting": "none (the baseline's checkpoint without its flip TTA)", "val_acc": None,
                 "delta_val": None, "test_acc": plain, "delta_test": plain - base["test/acc"], "wall_s": None})
    columns = ["knob", "setting", "val_acc", "delta_val", "test_acc", "delta_test", "wall_s"]
    print_table(rows, columns, "Fine-tuning knobs, EfficientNet-Lite0, real CIFAR-10 JPEGs (one change each)")
    save_json(rows, out / "results.json")
    record("recipe", rows, argv, args.results)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    (out / "recipe.md").write_text("\n".join(lines) + "\n")


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:+.4f}" if abs(value) < 0.2 and value != 0 else f"{value:.4f}" if value < 10 else f"{value:.0f}"
    return "" if value is None else str(value)
