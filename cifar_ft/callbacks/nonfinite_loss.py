"""Stop a diverging run before it writes a checkpoint with NaN weights, without a per-step sync."""
from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn

from cifar_ft.errors import DivergedError


class StopOnNonFiniteLoss(L.Callback):
    """Raise `DivergedError` (naming the first bad step and the learning rates) after a NaN/inf loss.

    Every step, whether the loss is finite is folded into one device tensor (no host sync). It is read
    back (the one sync, and under DDP one tiny all-reduce so every rank stops at the same step) only
    on periodic steps: every `check_every_n_steps` optimizer steps (null: the logging steps,
    `trainer.log_every_n_steps`, where Lightning reads the loss back anyway), at the last batch of
    every epoch, and right before any checkpoint is written. So the newest checkpoint on disk is
    always the last good one; at worst the run goes on for N - 1 steps after the first bad one.
    """

    def __init__(self, check_every_n_steps: int | None = None) -> None:
        self.every = check_every_n_steps
        self._first: torch.Tensor | None = None  # first step with a non-finite loss (device tensor; -1: none)
        self._last_loss: torch.Tensor | None = None

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
        self._last_loss = loss.detach()
        every = self.every or max(1, trainer.log_every_n_steps)
        if trainer.global_step % every == 0 or batch_idx + 1 >= trainer.num_training_batches:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # while the checkpoint is assembled, before it is written
            self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Read the flag back (a periodic sync); raise on every rank if any rank saw a bad loss."""
        if self._first is None:
            return
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
        value = self._last_loss.item() if self._last_loss is not None else float("nan")
        raise DivergedError(
            f"training loss became non-finite ({value}) at step {step} (epoch {trainer.current_epoch}; "
            f"lr {lrs}); stopped without saving, last good checkpoint: {last}. "
            "Try a lower optimizer.lr, trainer.gradient_clip_val=1.0 or trainer.precision=32-true")


def newest_checkpoint(trainer: L.Trainer) -> str | None:
    """The most recently written checkpoint of any checkpoint callback."""
    paths = [Path(p) for cb in trainer.checkpoint_callbacks
             for p in (getattr(cb, "last_model_path", ""), getattr(cb, "best_model_path", "")) if p]
    paths = [p for p in paths if p.is_file()]
    return str(max(paths, key=lambda p: p.stat().st_mtime_ns)) if paths else None
