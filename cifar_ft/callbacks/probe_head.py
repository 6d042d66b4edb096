"""A fitted start for the fresh head: before the first training step, the head becomes the multinomial
logistic regression of the pretrained backbone's features on a sample of training images.

Why: the first stage of LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and
Underperform Out-of-Distribution", ICLR 2022), at a fraction of its cost. A random head sends noise
back into the backbone during the first steps of full or partial fine-tuning, at the peak learning rate
of a short schedule; a head that already classifies sends useful gradients from step one (WiSE-FT,
Wortsman et al. 2022, starts fine-tuning from a zero-shot head for the same reason). LP-FT's probe is
a whole frozen epoch; here it is one forward pass over `images` images (inference: no backward) and a
full-batch L-BFGS fit on their features, seconds on a CPU.

Not a frozen epoch of the freeze schedule (`frozen_epochs: 1`): that trains the head by SGD over
every image, an epoch of time this is meant to save, and with the feature cache it reads the
features with the frozen BatchNorm layers in eval mode. Here the features come from the modes the
first training steps run in (the freeze schedule has set them by `on_train_start`; this callback
runs after it), so the head is fitted to the features it will see; every BatchNorm buffer is put
back afterwards, so the probe changes the head and nothing else.
"""
from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cifar_ft.contracts import FinetunableModule, StatisticsData
from cifar_ft.errors import ConfigError


class ProbeHead(L.Callback):
    """In `on_train_start` of a fit that starts at step 0 (a resumed run keeps its checkpoint's head):
    `images` training images, drawn from `seed` alone (the datamodule's `StatisticsData` contract:
    un-augmented, at the validation size), go through the backbone under `torch.no_grad`; the head's
    weight and bias are set to the minimiser of the mean cross-entropy + `l2` x |W|^2 over their
    features (L-BFGS, at most `max_iter` iterations). Every rank draws the same images and fits the
    same head; rank 0's is broadcast all the same, so no rank can differ by float noise."""

    def __init__(self, images: int, l2: float = 0.1, max_iter: int = 100, seed: int = 0) -> None:
        if images < 2:
            raise ConfigError(f"callbacks.probe_head.images={images}: must be >= 2 (null: off)")
        if l2 < 0 or max_iter < 1:
            raise ConfigError(f"callbacks.probe_head: l2={l2} must be >= 0 and max_iter={max_iter} >= 1")
        self.images, self.l2, self.max_iter, self.seed = int(images), float(l2), int(max_iter), int(seed)
        self.accuracy: float | None = None  # the fitted head's accuracy on its own images (a log line)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step > 0:
            return
        dm = trainer.datamodule
        if not isinstance(dm, StatisticsData) or not isinstance(pl_module, FinetunableModule):
            raise ConfigError("callbacks.probe_head needs a datamodule with sample_loader/eval_transform "
                              "and a model with backbone, head and features() (cifar_ft's own)")
        if not isinstance(pl_module.head, nn.Linear):
            raise ConfigError(f"callbacks.probe_head fits an nn.Linear head; this model's is "
                              f"{type(pl_module.head).__name__}")
        loader = dm.sample_loader("train", self.images, self.seed)
        if len(loader.dataset) < self.images:  # the contract gives all of them when fewer: say so, not less
            raise ConfigError(f"callbacks.probe_head.images={self.images} is more than the {len(loader.dataset)} "
                              f"training images; valid: 2 to {len(loader.dataset)}, or null (off)")
        with trainer.precision_plugin.forward_context():
            feats, labels = probe_features(pl_module, loader, dm.eval_transform())
        weight, bias = fit_logistic(feats.float(), labels, pl_module.head.out_features, self.l2, self.max_iter)
        weight, bias = trainer.strategy.broadcast((weight, bias), src=0)
        with torch.no_grad():
            pl_module.head.weight.copy_(weight)
            pl_module.head.bias.copy_(bias)
            self.accuracy = float(((feats.float() @ weight.T + bias).argmax(1) == labels).float().mean())
        rank_zero_info(f"[probe_head] head fitted on {len(labels)} training images' features "
                       f"(accuracy on them {self.accuracy:.3f})")


@torch.no_grad()
def probe_features(model: FinetunableModule, loader, transform) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features and labels of `loader`'s images, in the model's current modes; every BatchNorm
    buffer (running mean, variance, batch count) is restored afterwards."""
    saved = {id(m): [b.clone() for b in m.buffers(recurse=False)]
             for m in model.backbone.modules() if isinstance(m, _BatchNorm)}
    feats, labels = [], []
    try:
        for x, y, *_ in loader:
            feats.append(model.features(transform(x.to(model.device, non_blocking=True))))
            labels.append(y.to(model.device))
    finally:
        for m in model.backbone.modules():
            if id(m) in saved:
                for buffer, value in zip(m.buffers(recurse=False), saved[id(m)]):
                    buffer.copy_(value)
    return torch.cat(feats), torch.cat(labels)


def fit_logistic(feats: torch.Tensor, labels: torch.Tensor, num_classes: int, l2: float,
                 max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (C, F), bias (C,)) minimising mean cross-entropy + l2 * |weight|^2 by full-batch
    L-BFGS with a strong-Wolfe line search, from zero; features are standardised for the fit (so one
    `l2` suits any backbone's feature scale) and the result mapped back to raw features."""
    mean, std = feats.mean(0), feats.std(0).clamp_min(1e-6)
    z = (feats - mean) / std
    w = torch.zeros(num_classes, feats.shape[1], device=feats.device, requires_grad=True)
    b = torch.zeros(num_classes, device=feats.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(z @ w.T + b, labels) + l2 * w.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    weight = (w / std).detach()  # z @ w.T = feats @ (w / std).T - (mean / std) @ w.T
    return weight, (b - (mean / std) @ w.T).detach()


def probe_head(images: int | None = None, l2: float = 0.1, max_iter: int = 100,
               seed: int = 0) -> ProbeHead | None:
    """The callback, or None (off) when `images` is null: `callbacks.probe_head.images=2048`."""
    return None if images is None else ProbeHead(images, l2, max_iter, seed)
