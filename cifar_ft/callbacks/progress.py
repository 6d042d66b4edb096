"""A progress bar that costs nothing on the steps between logging steps."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar


class LoggedLossProgressBar(RichProgressBar):
    """Lightning's rich progress bar, redrawn every `refresh_rate` batches (conf: the logging steps),
    showing the training loss as the logger last wrote it.

    Logging the loss with `prog_bar=True` instead makes the bar read the device tensor back after
    every batch (Rich gathers its metrics per batch whatever the refresh rate): a host sync every
    step. Here the value is read once per logging step, right after the logger has read it."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave, **kwargs)
        self._loss: float | None = None
        self._read_at = -1

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        step = trainer.global_step
        if step != self._read_at and step % max(1, trainer.log_every_n_steps) == 0:
            loss = trainer.logged_metrics.get("train/loss")
            if loss is not None:
                self._loss, self._read_at = round(float(loss), 4), step
        if self._loss is not None:
            items["loss"] = self._loss
        return items
