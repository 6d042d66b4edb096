"""Selective backprop: the backward pass runs on the hardest part of each training batch only.

On a CPU a training step of EfficientNet-Lite0 costs about 5x an inference forward pass, and most of
that is the backward (README, partial fine-tuning). Selective backprop (Jiang et al., "Accelerating
Deep Learning by Focusing on the Biggest Losers", 2019; Kawaguchi and Lu, "Ordered SGD", AISTATS
2020, for the top-q form used here) scores a whole batch with a cheap forward pass and backpropagates
only through the `fraction` of it with the highest loss: the images the model already gets right
confidently add little gradient. Load batches of B/fraction images to keep B in the backward.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from cifar_ft.errors import ConfigError


def check_fraction(fraction: float) -> float:
    """`model.backprop_fraction`, or ConfigError naming the valid range (0, 1]."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ConfigError(f"model.backprop_fraction={fraction!r} must be a number in (0, 1] (the share of "
                          "each training batch, highest loss first, that the backward pass runs on; 1: all)")
    return float(fraction)


# (logits, targets, reduction=) -> loss: the module's own training loss; "none" gives it per image
Loss = Callable[..., torch.Tensor]


@torch.no_grad()
def score(module: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, per-image training loss) of a batch in inference mode: BatchNorm uses its running
    statistics and does not update them (so the backward batch alone moves them, as in plain training),
    dropout is off. Every submodule's own train/eval flag is restored afterwards, so modules a strategy
    keeps in eval mode (frozen BatchNorm statistics) stay there."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        logits = module(x)
    finally:
        for m, training in modes:
            m.training = training
    return logits, loss(logits, y, reduction="none")


def hardest(losses: torch.Tensor, fraction: float) -> torch.Tensor:
    """Indices of the round(fraction * B) highest losses of a batch (at least one), in batch order."""
    keep = max(1, round(fraction * losses.numel()))
    return torch.topk(losses, keep, sorted=False).indices.sort().values


def select(module: nn.Module, loss: Loss, x: torch.Tensor, y: torch.Tensor,
           fraction: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(the whole batch's scoring logits, for train/acc; the images and targets to backpropagate)."""
    logits, losses = score(module, loss, x, y)
    keep = hardest(losses, fraction)
    return logits, x[keep], y[keep]
