"""`python -m cifar_ft.bench transfer`: does transfer learning work on real images, and does it pay?

On the real CIFAR-10 training split (a held-out part as test), side by side, on this machine in one run:
(a) `experiment=cpu_transfer` (EfficientNet-Lite0, genuine ImageNet weights), (b) the same with
`model.pretrained=false strategy=full` (from scratch every layer must train), (c) a plain PyTorch loop
written the way the common tutorials write it (same model and weights, same images, PIL transforms,
Adam at a fixed LR) given (a)'s wall time.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cifar_ft.backbones import create_backbone
from cifar_ft.bench.common import DATA_HELP, add_results_arg, data_root, print_table, record, save_json
from cifar_ft.data.folder_source import FolderSource
from cifar_ft.runs.compose import compose_config
from cifar_ft.train import train


def run_ours(root: str, out: Path, overrides: list[str]) -> dict:
    cfg = compose_config(["experiment=cpu_transfer", f"data.root={root}", "trainer.enable_progress_bar=false",
                       *overrides], out)
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "metrics.json").read_text())
    return {"test_acc": metrics["test/acc"], "wall_s": wall, "test_images": None, "cfg": cfg}


class PathImages(Dataset):
    """torchvision.datasets.ImageFolder's behaviour: open each file with PIL per item, then transform."""

    def __init__(self, root: str, paths: list[str], labels: torch.Tensor, transform) -> None:
        self.root, self.paths, self.labels, self.transform = root, paths, labels.tolist(), transform
        self.source = None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        if self.source is None:
            self.source = FolderSource(self.root)
        src = self.source.read(self.paths[i])
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            img = im.convert("RGB")
        return self.transform(img), self.labels[i]


def tutorial_loop(cfg, budget_s: float, workers: int) -> dict:
    """The common tutorial: PIL Resize/Flip/ToTensor/Normalize, Adam(lr=1e-3), full fine-tuning."""
    import torchvision.transforms as T


    dm = instantiate(cfg.data)
    splits = dm._ensure_loaded()
    size, mean, std = cfg.model.input_size, list(cfg.model.mean), list(cfg.model.std)
    train_tf = T.Compose([T.Resize(size), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    test_tf = T.Compose([T.Resize(size), T.ToTensor(), T.Normalize(mean, std)])
    root = cfg.data.root
    train_ds = PathImages(root, splits["train"].paths, splits["train"].labels, train_tf)
    test_ds = PathImages(root, splits["test"].paths, splits["test"].labels, test_tf)
    loader = DataLoader(train_ds, batch_size=cfg.data.batch_size, shuffle=True, num_workers=workers)
    backbone = create_backbone(cfg.model.backbone, cfg.model.pretrained)
    model = nn.Sequential(backbone, nn.Linear(backbone.num_features, dm.num_classes))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, seen, epochs = time.perf_counter(), 0, 0
    model.train()
    while time.perf_counter() - start < budget_s:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(y)
            if time.perf_counter() - start >= budget_s:
                break
        epochs += 1
    train_s = time.perf_counter() - start
    acc = evaluate(model, DataLoader(test_ds, batch_size=256, num_workers=workers))
    return {"test_acc": acc, "wall_s": time.perf_counter() - start, "train_s": train_s,
            "images_seen": seen, "epochs_started": epochs, "test_images": len(test_ds)}


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = total = 0
    for x, y in loader:
        correct += (model(x).argmax(1) == y).sum().item()
        total += len(y)
    return correct / total


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m cifar_ft.bench transfer", description=__doc__)
    ap.add_argument("--data", help=DATA_HELP)
    ap.add_argument("--out", default="outputs/bench/transfer")
    ap.add_argument("--workers", type=int, default=torch.get_num_threads())
    ap.add_argument("overrides", nargs="*", help="extra Hydra overrides for (a) and (b)")
    add_results_arg(ap)
    args = ap.parse_args(argv)
    root, out = data_root(args.data), Path(args.out)
    a = run_ours(root, out / "a_pretrained", args.overrides)
    # full fine-tuning from scratch: the preset's frozen input side would stay random
    b = run_ours(root, out / "b_scratch", ["model.pretrained=false", "strategy=full", *args.overrides])
    c = tutorial_loop(a["cfg"], budget_s=a["wall_s"], workers=args.workers)
    rows = [
        {"run": "(a) cifar_ft experiment=cpu_transfer", "test_acc": a["test_acc"], "wall_s": a["wall_s"]},
        {"run": "(b) same, model.pretrained=false", "test_acc": b["test_acc"], "wall_s": b["wall_s"]},
        {"run": f"(c) tutorial loop, same budget ({c['images_seen']} images seen)", "test_acc": c["test_acc"],
         "wall_s": c["wall_s"]},
    ]
    test_n = len(instantiate(a["cfg"].data)._ensure_loaded()["test"])
    title = f"Transfer learning on real CIFAR-10 ({test_n} held-out test images, {torch.get_num_threads()} threads)"
    print_table(rows, ["run", "test_acc", "wall_s"], title)
    print(f"pretrained - scratch: {100 * (a['test_acc'] - b['test_acc']):+.1f} points; "
          f"pretrained - tutorial: {100 * (a['test_acc'] - c['test_acc']):+.1f} points")
    save_json(rows, out / "results.json")
    record("transfer", rows, argv, args.results)
