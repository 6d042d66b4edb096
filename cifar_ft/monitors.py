"""Training throughput, measured per epoch on the images actually fed to the model."""
from __future__ import annotations

import time

import lightning as L
import torch


class ThroughputMonitor(L.Callback):
    """Logs `train/images_per_sec` per epoch (wall clock from the first to the last batch)."""

    def __init__(self) -> None:
        self.images = 0
        self.start: float | None = None
        self.last_images_per_sec: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.start = 0, None

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


def _sync(pl_module: L.LightningModule) -> None:
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)
