"""Training throughput, measured per epoch on the images actually fed to the model."""
from __future__ import annotations

import time

import lightning as L
import torch


class ThroughputMonitor(L.Callback):
    """Logs `train/images_per_sec` per epoch (wall clock from the first to the last batch) and, on a
    GPU, `train/mfu`: achieved model FLOP/s over the device's measured bf16 matmul rate."""

    def __init__(self, mfu: bool = True) -> None:
        self.images = 0
        self.start: float | None = None
        self.last_images_per_sec: float | None = None
        self.mfu, self.last_mfu = mfu, None
        self.flops_per_image = self.peak_flops = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start, self.flops_per_image = 0, None, None
        cached = bool(getattr(trainer.datamodule, "features", None))  # head-only epochs: no model FLOPs
        if self.mfu and pl_module.device.type == "cuda" and not cached:
            # per epoch: what backpropagates changes as the freeze schedule unfreezes layers
            with trainer.precision_plugin.forward_context():
                self.flops_per_image = train_flops_per_image(pl_module, pl_module.hparams.input_size,
                                                             pl_module.device)
            if self.peak_flops is None:
                self.peak_flops = matmul_peak_flops(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if self.start is None:  # skip loader start-up and the first batch's fetch
            _sync(pl_module)
            self.start = time.perf_counter()
            self._skip_first = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if getattr(self, "_skip_first", False):
            self._skip_first = False
            _sync(pl_module)
            self.start = time.perf_counter()
            return
        self.images += int(batch[0].shape[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.start is None or self.images == 0:
            return
        _sync(pl_module)
        rate = self.images / max(time.perf_counter() - self.start, 1e-9)
        self.last_images_per_sec = rate
        pl_module.log("train/images_per_sec", rate, on_step=False, on_epoch=True, rank_zero_only=True)
        if self.flops_per_image and self.peak_flops:
            self.last_mfu = rate / trainer.world_size * self.flops_per_image / self.peak_flops
            pl_module.log("train/mfu", self.last_mfu, on_step=False, on_epoch=True, rank_zero_only=True)
            pl_module.log("train/flops_per_image", self.flops_per_image, on_step=False, on_epoch=True,
                          rank_zero_only=True)


def _sync(pl_module: L.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


def train_flops_per_image(model: torch.nn.Module, input_size: int, device: torch.device) -> float:
    """Forward + backward FLOPs for one image, counted by torch's FlopCounterMode on a batch of 2."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.randn(2, 3, input_size, input_size, device=device)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).float().sum().backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return counter.get_total_flops() / 2


def matmul_peak_flops(device: torch.device, n: int = 8192, reps: int = 10) -> float:
    """Measured bf16 matmul FLOP/s on `device` (the MFU denominator): n×n×n products after warm-up."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)
