"""`python -m cifar_ft.bench speed`: data path, training step, frozen epochs (and GPU throughput/MFU).

Every row is measured in this one run on this machine; compare ratios, not absolute numbers across
machines. Rows: (1) images/s delivered at 224 px by the common tutorial pipeline vs ours; (2)
training images/s of a plain PyTorch loop vs our Lightning run (same model, batch, precision, data
on device); (3) wall time of 5 frozen epochs with and without the feature cache vs one uncached
frozen epoch; (4) on a GPU: ViT-B/16 and EfficientNet-Lite0 at 224 px, training images/s and model
FLOP utilisation against the measured bf16 matmul rate; (5) framework overhead: plain loop vs a
bare LightningModule vs our command, for an overhead-bound (tiny@32) and a compute-bound (Lite0@64)
case; (6) collectives per training step with 2 gloo ranks, ours vs bare DDP (see overhead.py).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from cifar_ft.bench.budget import budget_rows
from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json
from cifar_ft.bench.overhead import collective_rows, overhead_rows
from cifar_ft.bench.speed_common import plain_loop, prepared_model
from cifar_ft.data.image_folder import ImageFolderDataModule
from cifar_ft.data.images import ImageSet, TensorImageDataset, collate_batch
from cifar_ft.data.transforms import BatchTransform
from cifar_ft.runs.compose import compose_config
from cifar_ft.train import train

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


class PILArrays(Dataset):
    """torchvision.datasets.CIFAR10's behaviour: a PIL image from the uint8 array per item."""

    def __init__(self, images: np.ndarray, labels: list[int], transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def rate(loader, device: torch.device, batches: int, transform=None) -> float:
    """Images/s delivered as normalised float batches on `device`, after one warm-up batch."""
    it = iter(loader)
    n, start = 0, None
    for i in range(batches + 1):
        batch = next(it)
        x = batch[0].to(device, non_blocking=True)
        x = transform(x, torch.Generator(device=device).manual_seed(i)) if transform else x.float()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if start is None:
            start = time.perf_counter()
        else:
            n += x.shape[0]
    return n / (time.perf_counter() - start)


def data_path(images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int, workers: int,
              batches: int) -> list[dict]:
    import torchvision.transforms as T

    tf = T.Compose([T.Resize(224), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(MEAN, STD)])
    hwc = images.permute(0, 2, 3, 1).numpy()
    tutorial = DataLoader(PILArrays(hwc, labels.tolist(), tf), batch_size=batch, shuffle=True,
                          num_workers=workers, persistent_workers=workers > 0)
    ours_ds = TensorImageDataset(ImageSet(images.to(device), labels.to(device)))
    ours = DataLoader(ours_ds, batch_size=batch, shuffle=True, collate_fn=collate_batch)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    ours_tf = BatchTransform(224, MEAN, STD, train=True, preset="basic", out_dtype=dtype, reuse_buffers=True)
    base = rate(tutorial, device, batches)
    fast = rate(ours, device, batches * 3, ours_tf)
    return [{"row": f"1 data path @224: tutorial (PIL, {workers} workers)", "value": base, "unit": "img/s"},
            {"row": f"1 data path @224: ours (uint8 batched, {dtype})".replace("torch.", ""), "value": fast,
             "unit": "img/s", "ratio": fast / base}]


def lightning_rate(model_overrides: list[str], batch: int, steps: int, out: Path, device: str) -> dict:
    """Our real run (train(cfg)) over in-memory data of the model's input size; images/s from the
    throughput monitor (first batch excluded), MFU on GPU."""
    size_arg = [o for o in model_overrides if o.startswith("model.input_size=")]
    size = int(size_arg[0].split("=")[1]) if size_arg else 224
    # 3 epochs of `steps` batches; the rate is the last epoch's (start-up and autotuning excluded)
    cfg = compose_config(["experiment=smoke", *model_overrides, f"trainer.accelerator={device}",
                       "data=synthetic", f"data.image_size={size}", f"data.train_size={batch * (steps + 1) + 64}",
                       "data.val_size=64", f"data.test_size={batch}", f"data.batch_size={batch}", "data.augment=none",
                       "trainer.max_epochs=3", "strategy.frozen_epochs=0", "trainer.num_sanity_val_steps=0",
                       "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
                       "scheduler.warmup_steps=5"], out)
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    return {"images_per_sec": metrics["train/images_per_sec"], "mfu": metrics.get("train/mfu"),
            "gflops_per_image": (metrics.get("train/flops_per_image") or 0) / 1e9 or None,
            "peak_tflops": (metrics.get("device_bf16_matmul_flops") or 0) / 1e12 or None}


def training_step(model_overrides: list[str], batch: int, steps: int, out: Path, device: torch.device) -> list[dict]:

    cfg = compose_config(["experiment=smoke", *model_overrides], out / "plain")
    model = prepared_model(model_overrides, out / "plain").to(device)
    size = cfg.model.input_size
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    plain = plain_loop(model, x, y, steps, precision)
    ours = lightning_rate(model_overrides, batch, steps, out / "lightning", device.type)["images_per_sec"]
    name = cfg.model.backbone
    return [{"row": f"2 train step {name}@{size} b{batch}: plain loop", "value": plain, "unit": "img/s"},
            {"row": f"2 train step {name}@{size} b{batch}: our Lightning run", "value": ours, "unit": "img/s",
             "ratio": ours / plain}]


def frozen_epochs(root: str, out: Path, device: str, images: int) -> list[dict]:
    """Fit wall time: 5 frozen epochs cached / uncached, and 1 uncached frozen epoch."""
    base = ["experiment=cpu_transfer", "strategy=full", "data.passes_per_epoch=1",  # frozen epochs of `full`
            "callbacks=default",
            f"data.root={root}", f"data.max_train_images={images}",
            "data.val_size=500", "data.test_size=500", "trainer.enable_progress_bar=false",
            f"trainer.accelerator={device}"]
    times = {}
    for name, extra in {"5 cached": ["trainer.max_epochs=5", "strategy.frozen_epochs=5"],
                        "5 uncached": ["trainer.max_epochs=5", "strategy.frozen_epochs=5",
                                       "callbacks.freeze.feature_cache=false"],
                        "1 uncached": ["trainer.max_epochs=1", "strategy.frozen_epochs=1",
                                       "callbacks.freeze.feature_cache=false"]}.items():
        train(compose_config([*base, *extra], out / name.replace(" ", "_")))
        times[name] = json.loads((out / name.replace(" ", "_") / "metrics.json").read_text())["fit_time_s"]
    one = times["1 uncached"]
    return [{"row": f"3 frozen epochs ({images} imgs): {k}", "value": v, "unit": "s fit", "ratio": v / one}
            for k, v in times.items()]


def gpu_models(out: Path, steps: int, compile_options=(False, True)) -> list[dict]:
    rows = Rows()
    for model, batch in (("vit_base", 256), ("efficientnet_lite0_offline", 256)):
        overrides = [f"model={model}", "model.pretrained=false"]
        rows += training_step(overrides, batch, steps, out / f"{model}_step", torch.device("cuda"))
        for compile_ in compile_options:
            res = lightning_rate([*overrides, f"model.compile={compile_}"], batch, steps,
                                 out / f"{model}_{compile_}", "gpu")
            rows += [{"row": f"4 GPU {model}@224 b{batch} bf16 compile={compile_}",
                      "value": res["images_per_sec"], "unit": "img/s", "mfu": res["mfu"],
                      "gflops_per_image": res["gflops_per_image"], "peak_tflops": res["peak_tflops"]}]
    return rows


class Rows(list):
    """Rows also printed as they are measured, so a run cut short still shows what it got."""

    def __iadd__(self, new):
        for row in new:
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
        return super().__iadd__(new)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench speed", description=__doc__)
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--out", default="outputs/bench/speed")
    ap.add_argument("--rows", default="123456", help="which rows to run, e.g. 12")
    ap.add_argument("--frozen-images", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=20)
    add_results_arg(ap)
    args = ap.parse_args(argv)
    out, root = Path(args.out), data_root(args.data)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    workers = torch.get_num_threads() if device.type == "cpu" else 8
    rows = Rows()
    if "1" in args.rows:
        dm = ImageFolderDataModule(root=root, input_size=32, mean=MEAN, std=STD, max_train_images=5000,
                                   val_size=0.01, test_size=0.01)
        train_set = dm._ensure_loaded()["train"]
        rows += data_path(train_set.images, train_set.labels, device, 128, workers, 12)
    if "2" in args.rows and not (device.type == "cuda" and "4" in args.rows):  # row 4 has it on GPU
        model = ["model=efficientnet_lite0_offline", "model.input_size=64"] if device.type == "cpu" else \
            ["model=efficientnet_lite0_offline"]
        rows += training_step(model, 64 if device.type == "cpu" else 256, args.steps, out / "step", device)
    if "3" in args.rows:
        rows += frozen_epochs(root, out / "frozen", "gpu" if device.type == "cuda" else "cpu", args.frozen_images)
    if "4" in args.rows and device.type == "cuda":
        rows += gpu_models(out / "gpu", args.steps * 2)
    if "5" in args.rows:
        rows += overhead_rows(out / "overhead")
        plain = next(r["value"] for r in rows if r["row"].startswith("5 lite0@64") and "plain loop" in r["row"])
        rows += [{**r, "row": f"5 {r['row']}"} for r in budget_rows(plain)[1:]]  # the recipes' budgets here
    if "6" in args.rows:
        rows += collective_rows(out / "collectives")
    print_table(rows, ["row", "value", "unit", "ratio", "non_periodic", "mfu", "gflops_per_image", "peak_tflops"],
                f"cifar_ft speed on {torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'} "
                f"({torch.get_num_threads()} threads)")
    save_json(rows, out / "results.json")
    record("speed", rows, argv, args.results)
