"""Stop a diverging run before it writes a checkpoint with NaN weights."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from cifar_ft.errors import DivergedError


class StopOnNonFiniteLoss(L.Callback):
    """Raise `DivergedError` (naming the step and learning rates) at the first NaN/inf training loss.

    Non-finite losses are accumulated on the device every step and read back every
    `check_every_n_steps` steps and at the last batch of every epoch, i.e. always before the epoch's
    checkpoint is written: the newest checkpoint on disk is the last good one. 1 checks every step
    (one host sync per step; raise it for tiny models on fast GPUs)."""

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.every = max(1, int(check_every_n_steps))
        self._first: torch.Tensor | None = None  # first step with a non-finite loss (device tensor; -1: none)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        if self._first is None:
            self._first = torch.full((), -1, dtype=torch.long, device=loss.device)
        step = trainer.global_step - 1  # the optimizer step this loss belongs to (already taken)
        new = ~torch.isfinite(loss.detach()) & (self._first < 0)
        self._first = torch.where(new, torch.full_like(self._first, step), self._first)  # no host sync
        last = batch_idx + 1 >= trainer.num_training_batches
        if trainer.global_step % self.every == 0 or last:
            self._check(trainer, loss)

    def _check(self, trainer: L.Trainer, loss: torch.Tensor) -> None:
        step = int(self._first.item())
        bad = step >= 0
        if trainer.world_size > 1:  # every rank must stop at the same step
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        step = step if step >= 0 else trainer.global_step - 1  # this rank's losses were finite
        lrs = ", ".join(f"{g.get('name', i)} {g['lr']:.3g}" for opt in trainer.optimizers
                        for i, g in enumerate(opt.param_groups))
        last = newest_checkpoint(trainer) or "none written yet"
        raise DivergedError(
            f"training loss became non-finite ({loss.item()}) at step {step} (epoch {trainer.current_epoch}; "
            f"lr {lrs}); stopped without saving, last good checkpoint: {last}. "
            "Try a lower optimizer.lr, trainer.gradient_clip_val=1.0 or trainer.precision=32-true")


def newest_checkpoint(trainer: L.Trainer) -> str | None:
    """The most recently written checkpoint of any checkpoint callback."""
    paths = [Path(p) for cb in trainer.checkpoint_callbacks
             for p in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", "")) if p]
    paths = [p for p in paths if p.is_file()]
    return str(max(paths, key=lambda p: p.stat().st_mtime_ns)) if paths else None
