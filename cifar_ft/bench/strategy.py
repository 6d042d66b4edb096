"""`python -m cifar_ft.bench strategy`: every fine-tuning strategy on one harness, two tables.

1. Real images, equal wall-clock budget: EfficientNet-Lite0 with its genuine ImageNet weights on the
   real CIFAR-10 JPEGs (`experiment=cpu_transfer`: 112 px, AdamW 2e-3, flip TTA, the data's own
   validation and held-out test splits), one row per strategy. Each strategy gets the same training
   budget in seconds: two calibration runs (512 and 2,048 images) measure its fit seconds as fixed
   cost + cost per image (feature cache, epochs and all), and the real run then trains on as many
   images as fit the budget (capped at the split). Strategies that need several epochs to be
   themselves (linear probe, LP-FT, gradual unfreezing) keep their epochs and see fewer images per
   epoch. `vpt` needs a ViT: no row here.
2. Cost per strategy on ViT-B/16 at 224 px (random weights: cost does not depend on their values):
   seconds per training step and peak memory at one batch size, each strategy in a fresh process
   (peak RSS on CPU; peak allocated tensor memory on a GPU, bf16 autocast).

Prints both tables, writes results.json and strategy.md under --out.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json

ROOT = Path(__file__).resolve().parents[2]
VAL = 1000
SPLITS = [f"data.val_size={VAL}", "data.test_size=2000"]
# one pass and a random head, whatever experiment=cpu_transfer chooses: every strategy as itself (partial
# with its own 6 groups in fp32, below: cpu_transfer's options for partial would apply otherwise)
AS_ITSELF = ["data.passes_per_epoch=1", "callbacks=default"]
TRAIN_IMAGES = 47000  # 50,000 in the shared zip minus validation and test
CALIBRATE = (512, 2048)  # training images of the two calibration runs per strategy
# strategy -> overrides that make it itself (epochs of its schedule); images per epoch come from the budget
LITE_STRATEGIES: dict[str, list[str]] = {
    "full": ["strategy.frozen_epochs=0"],
    "linear_probe": ["trainer.max_epochs=10"],
    "lp_ft": ["trainer.max_epochs=2"],
    "gradual": ["trainer.max_epochs=3", "callbacks.freeze.groups_per_epoch=4"],
    "bitfit": [],
    "norm": [],
    "partial": ["strategy.bn_statistics=adapt", "strategy.frozen_groups=6", "strategy.frozen_precision=fp32"],
    "lora": [],
    "dora": [],
}
VIT_STRATEGIES = ["full", "linear_probe", "bitfit", "norm", "partial", "lora", "dora", "vpt"]


def train_run(root: str, out: Path, strategy: str, images: int) -> dict:
    """One `cifar_ft.train` run on `images` training images (kept: a rerun of the bench reuses it); its
    metrics.json + wall time. data.max_train_images caps the pool the validation split is taken from."""
    if not (out / "metrics.json").is_file():
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "cifar_ft.train", "experiment=cpu_transfer", f"data.root={root}", *SPLITS,
               *AS_ITSELF, f"strategy={strategy}", *LITE_STRATEGIES[strategy], f"data.max_train_images={images + VAL}",
               "trainer.enable_progress_bar=false", f"hydra.run.dir={out}"]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}\n{proc.stderr[-2000:]}")
        (out / "wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}\n")
    return {**json.loads((out / "metrics.json").read_text()), "wall_s": float((out / "wall_s.txt").read_text())}


def lite_table(root: str, out: Path, budget_s: float, only: list[str] | None) -> list[dict]:
    rows = []
    for strategy in LITE_STRATEGIES:
        if only and strategy not in only:
            continue
        small = train_run(root, out / "calibrate" / strategy, strategy, CALIBRATE[0])
        large = train_run(root, out / "calibrate" / f"{strategy}_{CALIBRATE[1]}", strategy, CALIBRATE[1])
        # fit seconds = fixed (validation, cache of the val split, warm-up) + per image x images
        per_image = max(1e-6, (large["fit_time_s"] - small["fit_time_s"]) / (CALIBRATE[1] - CALIBRATE[0]))
        fixed = max(0.0, small["fit_time_s"] - per_image * CALIBRATE[0])
        images = min(TRAIN_IMAGES, max(CALIBRATE[0], int((budget_s - fixed) / per_image)))
        m = train_run(root, out / strategy, strategy, images)
        rows.append({"strategy": strategy, "val_acc": m["val/acc_best"], "test_acc": m["test/acc"],
                     "trainable_pct": m["trainable_pct"], "peak_rss_mb": m.get("peak_memory_mb"),
                     "checkpoint_mb": m["checkpoint_mb"], "images_per_s": m.get("train/images_per_sec"),
                     "train_images": images, "epochs": m["epochs"], "fit_s": m["fit_time_s"]})
        print(rows[-1], flush=True)
    return rows


def vit_row(strategy: str, batch: int, steps: int, backbone: str = "vit_base_patch16_224", size: int = 224) -> dict:
    """Seconds per optimizer step and peak memory of ViT-B/16 at 224 px under `strategy` (this process)."""
    import resource

    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from cifar_ft.runs.compose import CONF_DIR
    from cifar_ft.runs.resolvers import register_resolvers

    register_resolvers()
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("train", [f"strategy={strategy}"])
    from cifar_ft.models.factory import build_classifier
    from cifar_ft.runs.build import strategy_and_schedule

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    model = build_classifier(backbone=backbone, num_classes=10, pretrained=False, input_size=size,
                            strategy=instantiate(strategy_and_schedule(cfg.strategy)[0])).to(device)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-4)
    x, y = torch.randn(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    frozen_backbone = not any(p.requires_grad for p in model.backbone.parameters())
    if gpu:
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            if frozen_backbone:  # a linear probe: features without autograd, then the head
                with torch.no_grad():
                    feats = model.backbone(x)
                loss = model.loss(model.head(feats), y)
            else:
                loss = model.loss(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):  # warm-up (allocator, kernels)
        step()
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if gpu:
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    if gpu:
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB -> MiB
    total = sum(p.numel() for p in model.parameters())
    return {"strategy": strategy, "device": torch.cuda.get_device_name() if gpu else "cpu", "batch": batch,
            "step_s": seconds, "images_per_s": batch / seconds, "peak_mb": peak,
            "trainable_pct": 100 * sum(p.numel() for p in trainable) / total}


def vit_table(batch: int, steps: int, backbone: str = "vit_base_patch16_224", size: int = 224) -> list[dict]:
    """One row per strategy, each in its own process (a clean peak-memory count)."""
    rows = []
    for strategy in VIT_STRATEGIES:
        proc = subprocess.run([sys.executable, "-m", "cifar_ft.bench", "strategy", "--vit-row", strategy,
                               "--batch", str(batch), "--steps", str(steps), "--vit-backbone", backbone,
                               "--vit-size", str(size)], cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr[-2000:])
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    return rows


def markdown(rows: list[dict], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]) + "\n"


def _cell(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4f}" if abs(value) < 1 else f"{value:,.1f}"
    return "" if value is None else f"{value:,}" if isinstance(value, int) else str(value)


LITE_COLUMNS = ["strategy", "val_acc", "test_acc", "trainable_pct", "peak_rss_mb", "checkpoint_mb", "images_per_s",
                "train_images", "epochs", "fit_s"]
VIT_COLUMNS = ["strategy", "device", "batch", "step_s", "images_per_s", "peak_mb", "trainable_pct"]


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench strategy", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--out", default="outputs/bench/strategy")
    ap.add_argument("--budget-s", type=float, default=120.0, help="training seconds per strategy (table 1)")
    ap.add_argument("--only", nargs="*", help="strategies of table 1 to run (default: all)")
    ap.add_argument("--batch", type=int, default=None, help="table 2 batch size (default: 256 on a GPU, 8 on CPU)")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per strategy (table 2)")
    ap.add_argument("--tables", default="lite,vit", help="which tables: lite, vit or both")
    ap.add_argument("--vit-row", help=argparse.SUPPRESS)
    ap.add_argument("--vit-backbone", default="vit_base_patch16_224", help=argparse.SUPPRESS)
    ap.add_argument("--vit-size", type=int, default=224, help=argparse.SUPPRESS)
    add_results_arg(ap)
    args = ap.parse_args(argv)
    if args.vit_row:
        print(json.dumps(vit_row(args.vit_row, args.batch, args.steps, args.vit_backbone, args.vit_size)))
        return
    out, tables = Path(args.out), args.tables.split(",")
    results = {}
    if "lite" in tables:
        results["lite"] = lite_table(data_root(args.data), out, args.budget_s, args.only)
        print_table(results["lite"], LITE_COLUMNS, f"Strategies, EfficientNet-Lite0, real CIFAR-10 JPEGs, "
                                                   f"{args.budget_s:.0f} s training budget each")
    if "vit" in tables:
        import torch

        batch = args.batch or (256 if torch.cuda.is_available() else 8)
        results["vit"] = vit_table(batch, args.steps)
        print_table(results["vit"], VIT_COLUMNS, "Cost per strategy, ViT-B/16 at 224 px")
    save_json([dict(r, table=t) for t, rows in results.items() for r in rows], out / "results.json")
    record("strategy", [dict(r, table=t) for t, rows in results.items() for r in rows], argv, args.results)
    md = "".join(markdown(results[t], cols) + "\n" for t, cols in (("lite", LITE_COLUMNS), ("vit", VIT_COLUMNS))
                 if t in results)
    (out / "strategy.md").write_text(md)
    print(md)
