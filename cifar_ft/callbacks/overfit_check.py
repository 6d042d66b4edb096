"""`debug=overfit`: can the model fit a few batches? Prints the verdict when training ends."""
from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class OverfitCheck(L.Callback):
    """After fit, prints the last epoch's mean training loss on the overfitted batches and whether it
    fell below `max_loss` (a model, loss and optimizer that work drive it to ~0)."""

    def __init__(self, max_loss: float = 0.05) -> None:
        self.max_loss = float(max_loss)
        self.final_loss: float | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss_epoch")
        if loss is not None:
            self.final_loss = float(loss)  # once per epoch

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.final_loss is None:
            return
        verdict = "OK" if self.final_loss < self.max_loss else f"NOT below {self.max_loss}: check the model, loss, LR"
        rank_zero_info(f"overfit check: training loss {self.final_loss:.4f} on {trainer.overfit_batches} batches "
                       f"after {trainer.current_epoch} epochs: {verdict}")
