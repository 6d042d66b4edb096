"""Progressive resizing: small training images early, the full input size late (fast.ai's and FFCV's
schedules; timm's per-batch image sizes). Early steps cost less (a step's compute grows with the
image area) while the last part of the run trains at the size the model is tested at."""
from __future__ import annotations

import lightning as L

from cifar_ft.contracts import ResizableTrainData
from cifar_ft.errors import ConfigError


class ProgressiveResize(L.Callback):
    """The training input size ramps linearly from `start_size` px to the model's input size between
    `start_fraction` and `end_fraction` of the run's optimizer steps, in multiples of `step` px, then
    stays there; validation and test always see their own size. The size is a function of the global
    step alone, so a resumed run continues the same schedule. Set each training batch through the
    datamodule's `ResizableTrainData.set_train_size` (cifar_ft.contracts). Under gradient
    accumulation the size follows optimizer steps, so micro-batches of one step may differ by one step."""

    def __init__(self, start_size: int, start_fraction: float = 0.0, end_fraction: float = 0.75,
                 step: int = 16) -> None:
        if start_size < 16 or step < 1 or not 0.0 <= start_fraction < end_fraction <= 1.0:
            raise ConfigError(f"callbacks.progressive_resize: start_size={start_size} (>= 16 px), step={step} "
                              f"(>= 1) and start_fraction={start_fraction} < end_fraction={end_fraction} in [0, 1] "
                              "required")
        self.start_size, self.step = int(start_size), int(step)
        self.start_fraction, self.end_fraction = float(start_fraction), float(end_fraction)

    def size_at(self, global_step: int, total_steps: int, end_size: int) -> int:
        """The training size (px) at `global_step` of `total_steps`."""
        done = global_step / max(1, total_steps)
        ramp = min(1.0, max(0.0, (done - self.start_fraction) / (self.end_fraction - self.start_fraction)))
        size = self.start_size + ramp * (end_size - self.start_size)
        return min(end_size, max(self.step, int(round(size / self.step)) * self.step))

    # A batch is transferred (and resized) before its own on_train_batch_start: the size of the next
    # batch is set at train start and after each batch, from the step that batch will be.
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set(trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._set(trainer)

    def _set(self, trainer: L.Trainer) -> None:
        dm = trainer.datamodule
        if isinstance(dm, ResizableTrainData):
            dm.set_train_size(self.size_at(trainer.global_step, int(trainer.estimated_stepping_batches), dm.input_size))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if isinstance(trainer.datamodule, ResizableTrainData):
            trainer.datamodule.set_train_size(None)


def progressive_resize(start_size: int | None = None, start_fraction: float = 0.0, end_fraction: float = 0.75,
                       step: int = 16) -> ProgressiveResize | None:
    """The callback, or None (off) when `start_size` is null: `callbacks.progressive_resize.start_size=64`."""
    return None if start_size is None else ProgressiveResize(start_size, start_fraction, end_fraction, step)
