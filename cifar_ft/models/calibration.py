"""Test-time augmentation and temperature scaling: how logits become the probabilities we report.

TTA works in log space: `TTA[name](model, x)` gives the log of the (averaged) class probabilities,
so `flip` is log((p(x) + p(mirror x)) / 2), computed with logaddexp (no clamping of tiny values).

Temperature scaling (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks") divides
those log-probabilities by one scalar T > 0 and renormalises: `softmax(log p / T)`. Without TTA,
log p = z - logsumexp(z), so this is exactly softmax(z / T) of the logits z: an export can fold 1/T
into the head's weight and bias. With TTA, the averaged probabilities are what gets calibrated. A
positive T never changes the argmax, so accuracy is unchanged. T is fitted after training by
`calibrate=temperature` (callbacks/temperature.py) and stored in the checkpoint.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn


def _log_probs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float().log_softmax(-1)


def _flip(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return torch.logaddexp(_log_probs(model, x), _log_probs(model, x.flip(-1))) - math.log(2)


# model.tta / tta -> log class probabilities of an image batch (test, eval, predict)
TTA: dict[str, Callable[[nn.Module, torch.Tensor], torch.Tensor]] = {
    "none": _log_probs,
    "flip": _flip,  # the image and its mirror, probabilities averaged
}

# calibrate= -> what the final test (train) fits on the validation split; eval/predict: `none` only
# switches a stored temperature off
CALIBRATIONS = ("none", "temperature")


def apply_temperature(log_probs: torch.Tensor, temperature: float | torch.Tensor) -> torch.Tensor:
    """Calibrated probabilities softmax(log p / T) of log-probabilities (B, C)."""
    return (log_probs / temperature).softmax(-1)


def fold_into_head(weight: torch.Tensor, bias: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The head whose logits are z / T: its softmax is the calibrated probabilities (no TTA)."""
    return weight.detach() / temperature, bias.detach() / temperature
