"""Record in every checkpoint how new images must be prepared to look like the training data."""
from __future__ import annotations

import lightning as L

from cifar_ft.contracts import FrozenPhaseData


class RecordPreprocessing(L.Callback):
    """Writes `checkpoint["preprocessing"]` = the datamodule's `preprocessing()` (stored image side,
    eval crop) whenever a checkpoint is saved; `cifar_ft.predict` reads it to prepare image files
    exactly as the model saw its test images."""

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        dm = trainer.datamodule
        if isinstance(dm, FrozenPhaseData):
            checkpoint["preprocessing"] = dm.preprocessing()
