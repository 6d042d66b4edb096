"""`python -m cifar_ft.bench gpu [--data DIR_OR_ZIP] [--test T] [--dry-run]`: every GPU figure of the
README in one prepared command (at most about 8 minutes on one H100/H200).

Rows (`ROWS`, each a function of the run's `Setting`; `--rows` picks some):
- `data`: the data path at 224 px, ours (uint8 batches on the device) vs the tutorial's PIL pipeline;
- `vit`: ViT-B/16 training at 224 px, a plain PyTorch loop vs our Lightning run, eager and
  compiled, with MFU (FLOPs per image from the throughput monitor against the measured bf16 rate);
- `lite0`, `lite2`: EfficientNet-Lite0/Lite2 with the genuine ImageNet weights, to accuracy on the
  real images (`experiment=lite0_cifar10_gpu` / `lite2_cifar10_gpu`): fit seconds and test accuracy
  on the held-out split, and on `--test T` (a folder of images never trained on) when given;
- `strategies`: seconds per step and peak memory of each fine-tuning strategy on ViT-B/16.
Writes `results.json` (rows plus device, date and commit) and `gpu.md`, a README-ready table.

`--dry-run` runs every row for a few steps on the CPU, on tiny inputs (ViT-Tiny at 32 px, random
weights, a generated image folder), so the command cannot rot before a GPU is lent; the test suite
runs it. Its figures mean nothing; the compiled row compiles with the `eager` backend there
(inductor's CPU compile of a ViT takes minutes on 2 cores; on the GPU it is inductor).
"""
from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json
from cifar_ft.reports.artifacts import git_commit

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["row", "value", "unit", "ratio", "mfu", "fit_s", "peak_mb"]


@dataclass
class Setting:
    """What every row reads: where to write, the data, the device, and the dry run's small sizes."""

    out: Path
    data: str
    test: str | None
    dry: bool

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.dry else "cuda")


def data_row(s: Setting) -> list[dict]:
    from cifar_ft.bench.speed import data_path

    gen = torch.Generator().manual_seed(0)
    n = 128 if s.dry else 20_000  # batches x (3 x timed + 1 warm-up) of the faster path
    images, labels = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen), torch.arange(n) % 10
    return data_path(images, labels, s.device, 16 if s.dry else 256, 0 if s.dry else 8, 2 if s.dry else 30)


def vit_rows(s: Setting) -> list[dict]:
    from cifar_ft.bench.speed import lightning_rate, training_step

    model = ["model=vit_tiny", "model.input_size=32"] if s.dry else ["model=vit_base"]
    model, batch, steps = [*model, "model.pretrained=false"], 4 if s.dry else 256, 2 if s.dry else 40
    rows = training_step(model, batch, steps, s.out / "vit_step", s.device)
    for compiled in (False, True):
        extra = [f"model.compile={compiled}"] + (["model.compile_backend=eager"] if s.dry and compiled else [])
        res = lightning_rate([*model, *extra], batch, steps, s.out / f"vit_compile_{compiled}", s.device.type)
        rows.append({"row": f"ViT training, our run, compile={compiled}", "value": res["images_per_sec"],
                     "unit": "img/s", "mfu": res["mfu"]})
    return rows


def to_accuracy(s: Setting, experiment: str) -> list[dict]:
    """One recipe run on the real images, then its best checkpoint on `--test` (if given)."""
    out = s.out / experiment
    args = [f"experiment={experiment}", f"data.root={s.data}", "trainer.enable_progress_bar=false",
            f"hydra.run.dir={out}"]
    if s.dry:
        args += ["trainer=cpu", "model.pretrained=false", "model.input_size=32", "model.batch_size=8",
                 "data.val_size=20", "data.test_size=20", "trainer.max_epochs=1"]  # 10 steps: 80 images
    _command(["cifar_ft.train", *args])
    metrics = json.loads((out / "metrics.json").read_text())
    row = {"row": f"{experiment}: fit and held-out test", "value": metrics["test/acc"], "unit": "test acc",
           "test_acc": metrics["test/acc"], "fit_s": metrics["fit_time_s"]}
    rows = [row]
    if s.test:
        tested = out.parent / f"{out.name}_test"
        _command(["cifar_ft.eval", f"ckpt_path={metrics['best_ckpt']}", "data=image_folder",
                  f"data.root={s.test}", f"hydra.run.dir={tested}"])
        acc = json.loads((tested / "metrics.json").read_text())["test/acc"]
        rows.append({**row, "row": f"{experiment}: on {Path(s.test).name}", "value": acc, "test_acc": acc})
    return rows


def strategy_rows(s: Setting) -> list[dict]:
    from cifar_ft.bench.strategy import vit_table

    size = {"backbone": "vit_tiny_patch16_224", "size": 32} if s.dry else {}
    table = vit_table(2 if s.dry else 256, 1 if s.dry else 5, **size)
    return [{"row": f"strategy {r['strategy']}: ViT step", "value": r["step_s"], "unit": "s/step",
             "peak_mb": r["peak_mb"], "trainable_pct": r["trainable_pct"]} for r in table]


# row name -> the function that measures it (add a row: a function and an entry)
ROWS: dict[str, Callable[[Setting], list[dict]]] = {
    "data": data_row, "vit": vit_rows, "lite0": lambda s: to_accuracy(s, "lite0_cifar10_gpu"),
    "lite2": lambda s: to_accuracy(s, "lite2_cifar10_gpu"), "strategies": strategy_rows}


def _command(args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}\n{proc.stderr[-2000:]}")


def dry_data(out: Path, split: str = "train") -> str:
    """10 classes x 12 generated 32 px JPEGs in `<out>/<split>/`: an image folder for the dry run's
    recipe rows (`train`), and the folder they are also tested on (`test`, as `--test`)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    for c in range(10):
        folder = out / split / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(12):
            pixels = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=gen).numpy()
            Image.fromarray(pixels).save(folder / f"{i:04d}.jpg")
    return str(out)


def header(dry: bool) -> dict:
    commit = (git_commit() or "unknown")[:12]
    device = "CPU dry run" if dry else torch.cuda.get_device_name()
    return {"device": device, "date": datetime.date.today().isoformat(), "commit": commit, "dry_run": dry}


def markdown(head: dict, rows: list[dict]) -> str:
    lines = [f"**{head['device']}**, {head['date']}, commit {head['commit']} (`python -m cifar_ft.bench gpu`)", "",
             "| what | figure | unit | ratio | MFU | fit s | peak MiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        cells = [f"{r[k]:,.4g}" if isinstance(r.get(k), float) else str(r.get(k) or "") for k in
                 ("value", "unit", "ratio", "mfu", "fit_s", "peak_mb")]
        lines.append(f"| {r['row']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench gpu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--test", help="a folder of test images never trained on (test/<class>/*.jpg)")
    ap.add_argument("--out", default="outputs/bench/gpu")
    ap.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of: {', '.join(ROWS)}")
    ap.add_argument("--dry-run", action="store_true", help="every row for a few steps on the CPU")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    chosen = args.rows.split(",")
    if unknown := [r for r in chosen if r not in ROWS]:
        raise SystemExit(f"error: --rows {','.join(unknown)} is not valid; valid: {', '.join(ROWS)}")
    if not args.dry_run and not torch.cuda.is_available():
        raise SystemExit("error: no GPU here; bench gpu measures one (--dry-run checks every row on the CPU)")
    out = Path(args.out)
    data = dry_data(out / "dry_data") if args.dry_run else data_root(args.data)
    test = dry_data(out / "dry_test", "test") if args.dry_run and not args.test else args.test
    setting, rows = Setting(out, data, test, args.dry_run), []
    for name in chosen:
        rows += ROWS[name](setting)
        print(f"[bench gpu] {name}: done", flush=True)
    head = header(args.dry_run)
    print_table(rows, COLUMNS, f"bench gpu: {head['device']}, {head['date']}, commit {head['commit']}")
    save_json([{**head, **r} for r in rows], out / "results.json")
    if not args.dry_run:  # a few CPU steps per row: no figure to keep
        record("gpu", [{**head, **r} for r in rows], argv, args.results)
    (out / "gpu.md").write_text(markdown(head, rows))
    print(markdown(head, rows))
