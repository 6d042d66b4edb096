"""Precise BatchNorm statistics (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021): before each
validation of a fit, the running mean and variance of every BatchNorm layer that training updates are
recomputed with the current weights over a fixed number of training images.

Why: a running statistic is an exponential average (momentum 0.1) over the last ~10 batches, taken
while the weights still moved. In a run of one or two epochs that is a noisy estimate for weights
that are not the final ones, and the validation, the test and every checkpoint use it. A population
average over a few thousand images with the final weights is the statistic the network should be
tested with (SWA's `update_bn` recomputes them for the same reason after averaging weights).
"""
from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cifar_ft.contracts import FinetunableModule, StatisticsData
from cifar_ft.errors import ConfigError


class PreciseBatchNorm(L.Callback):
    """At the start of every validation during fit (not the sanity check), the BatchNorm layers that
    were updating their statistics in the last training batch (those in training mode then: a layer
    the freeze schedule keeps frozen with ImageNet statistics stays as it is) are reset and fed `images`
    training images in inference of the gradient-free kind (`torch.no_grad`), with momentum None (a
    cumulative average), then restored to their momentum. The images are un-augmented at the size the
    model is validated at (the datamodule's `StatisticsData` contract), drawn afresh from
    (`seed`, global step), so every rank computes the same statistics and a resumed run the same ones.
    Nothing happens where the strategy keeps every statistic fixed (`bn_statistics_frozen()`: BitFit,
    LoRA) or the model has no BatchNorm (ViT).

    Not torch.optim.swa_utils.update_bn: it resets every BatchNorm layer of the model and puts the
    whole model in training mode, which would overwrite the ImageNet statistics of the layers a
    partial strategy keeps frozen. Ordered after the EMA callback (conf/callbacks/default.yaml), it
    runs after EMA swapped the averaged weights in, so it recomputes the statistics of the weights
    that are validated and saved."""

    def __init__(self, images: int, seed: int = 0) -> None:
        if images < 1:
            raise ConfigError(f"callbacks.precise_bn.images={images}: must be >= 1 (null: off)")
        self.images, self.seed = int(images), int(seed)
        self._updating: list[_BatchNorm] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        self._updating = updating_batchnorms(pl_module)

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if (trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or not self._updating
                or not isinstance(dm, StatisticsData) or not isinstance(pl_module, FinetunableModule)
                or pl_module.bn_statistics_frozen()):
            return
        loader = dm.sample_loader("train", self.images, self.seed * 1_000_003 + trainer.global_step)
        with trainer.precision_plugin.forward_context():  # bf16 runs: bf16 images, as validation's
            recompute_statistics(self._updating, pl_module, loader, dm.eval_transform())


def updating_batchnorms(module: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of `module` that update running statistics in its current mode."""
    return [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training and m.track_running_stats]


@torch.no_grad()
def recompute_statistics(layers: list[_BatchNorm], model: FinetunableModule, loader, transform) -> int:
    """Reset `layers` and set their running statistics to the average over `loader`'s images, with the
    rest of the model in its current (eval) mode; returns the number of images seen."""
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
        m.train()
    seen = 0
    try:
        for x, *_ in loader:
            model.features(transform(x.to(model.device, non_blocking=True)))
            seen += len(x)
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
            m.eval()
    return seen


def precise_bn(images: int | None = None, seed: int = 0) -> PreciseBatchNorm | None:
    """The callback, or None (off) when `images` is null: `callbacks.precise_bn.images=4096`."""
    return None if images is None else PreciseBatchNorm(images, seed)
