"""What several benchmark rows share: the plain PyTorch training loop, and our model built as a run builds it."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from cifar_ft.runs.compose import compose_config


def prepared_model(model_overrides: list[str], out: Path, classes: int = 10) -> torch.nn.Module:
    """Our ImageClassifier from the real config, set up as in a run (channels-last for CNNs)."""
    cfg = compose_config(["experiment=smoke", *model_overrides], out)
    model = instantiate(cfg.model, num_classes=classes, optimizer=None, scheduler=None)
    model.setup("fit")
    return model


def plain_loop(model, x: torch.Tensor, y: torch.Tensor, steps: int, precision: str) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)  # as ours: fused on CPU and GPU
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if precision == "bf16-mixed" else torch.enable_grad
    model.train()
    for i in range(steps + 2):
        if i == 2:  # two warm-up steps
            if x.is_cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        with ctx():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if x.is_cuda:
        torch.cuda.synchronize()
    return steps * x.shape[0] / (time.perf_counter() - start)


def plain_loop_logged(model: torch.nn.Module, loader, steps: int, log_every: int = 10, skip: int = 1) -> float:
    """The plain loop timed like a Lightning run seen from outside: fresh batches from `loader`, the
    clock read at the steps a logger would write (every `log_every`), the first `skip` points dropped."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as ours: fused on CPU and GPU
    model.train()
    stamps = []
    for i, (x, y) in enumerate(loader):
        if i >= steps:
            break
        loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (i + 1) % log_every == 0:
            loss.item()  # what a logger does on its steps
            stamps.append((i + 1, time.perf_counter()))
    (s0, t0), (s1, t1) = stamps[skip], stamps[-1]
    return (s1 - s0) * loader.batch_size / (t1 - t0)
