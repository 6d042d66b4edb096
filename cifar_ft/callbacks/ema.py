"""Exponential moving average of the weights: validation, test, checkpoints and exports use it."""
from __future__ import annotations

import itertools

import lightning as L
import torch
from lightning.pytorch.callbacks import EMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


class EMA(EMAWeightAveraging):
    """Lightning's `EMAWeightAveraging` with a sync-free update and optional decay warmup.

    Kept from Lightning: validation runs on the averaged weights (swapped in and out), checkpoints
    hold them as `state_dict` (so eval, predict and export use them) and the live weights as
    `current_model_state`, and a resume restores both. The average covers every parameter and
    buffer: a backbone layer frozen until epoch k is averaged at its (constant) value until then, and
    from its first unfrozen step on like any other.

    Changed, for measured reasons: torch's `AveragedModel.update_parameters` reads its update count
    back from the device twice per update (`bool(n_averaged == 0)`, `n_averaged > 0`), a host sync
    every step on a GPU, and averages parameter by parameter. Here the count is a Python int (saved
    in the callback state) and the update is one `torch._foreach_lerp_` over the float tensors that
    can change (parameters that train now, and buffers: a frozen parameter's average is its value). With
    `warmup`, the decay at update t is min(decay, (1 + t) / (10 + t)) (timm's ModelEmaV3), so short
    runs are not dominated by the pretrained starting point. When a test or predict stage loads a
    checkpoint, the averaged weights stay in place (Lightning would restore the live ones).
    """

    def __init__(self, decay: float = 0.999, warmup: bool = True, update_every_n_steps: int = 1,
                 update_starting_at_step: int | None = None) -> None:
        super().__init__(decay=decay, update_every_n_steps=update_every_n_steps,
                         update_starting_at_step=update_starting_at_step)
        self.decay, self.warmup, self.updates = float(decay), bool(warmup), 0

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, pl_module: L.LightningModule) -> None:
        average = self._average_model
        first = self.updates == 0
        # Parameters that do not train now are constant, so their average is their value already:
        # only what trains is averaged (a LoRA run lerps its adapters, not the 86 M frozen weights).
        params = [(a, c) for a, c in zip(average.module.parameters(), pl_module.parameters())
                  if first or c.requires_grad]
        pairs = itertools.chain(params, zip(average.module.buffers(), pl_module.buffers()))
        floats, others = [], []
        for avg, cur in pairs:
            (floats if avg.is_floating_point() else others).append((avg, cur.detach()))
        if floats:
            ema, live = [a for a, _ in floats], [c for _, c in floats]
            if self.updates == 0:
                torch._foreach_copy_(ema, live)
            else:
                torch._foreach_lerp_(ema, live, 1.0 - self.current_decay())
        for avg, cur in others:  # BatchNorm's num_batches_tracked: follows the live model
            avg.copy_(cur)
        average.n_averaged += 1  # on the device, never read back
        self.updates += 1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        step_idx = trainer.global_step - 1
        if trainer.global_step > self._latest_update_step and self.should_update(step_idx=step_idx):
            self.update(pl_module)
            self._latest_update_step = trainer.global_step

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Updates are per step only."""

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # resuming: restore the live weights and the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "updates": self.updates}

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict(state_dict)
        self.updates = int(state_dict.get("updates", 0))


def ema_callback(decay: float | None = None, warmup: bool = True, update_every_n_steps: int = 1,
                 update_starting_at_step: int | None = None) -> EMA | None:
    """`callbacks.ema.decay=0.999` turns EMA on (null: off, no callback)."""
    if decay is None:
        return None
    return EMA(decay, warmup, update_every_n_steps, update_starting_at_step)
