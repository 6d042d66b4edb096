"""Strategies that train a subset of the pretrained parameters as they are (nothing injected).

- `full` / `lp_ft` / `gradual`: every backbone parameter (the freeze schedule decides when: from the
  first unfrozen epoch, after a linear-probe phase, or layer group by layer group).
- `linear_probe`: none; only the head trains, on cached features (the backbone stays frozen).
- `bitfit`: the biases (Ben Zaken et al., "BitFit", ACL 2022).
- `norm`: the affine parameters of the normalisation layers (LayerNorm, BatchNorm, GroupNorm); trained
  BatchNorm layers also update their running statistics.
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cifar_ft.strategies.base import Strategy, matching

NORM_LAYERS = (nn.LayerNorm, _BatchNorm, nn.GroupNorm)  # timm's LayerNorm2d etc. subclass these


class Full(Strategy):
    """The whole backbone trains (once the schedule unfreezes it): today's default fine-tuning."""

    def __init__(self, name: str = "full") -> None:
        super().__init__(name)

    def trainable(self, backbone: nn.Module) -> list[str]:
        return [n for n, _ in backbone.named_parameters()]


class LinearProbe(Strategy):
    """Nothing of the backbone trains: a linear classifier on frozen features."""

    freezes_base = True
    bn_statistics = "frozen"

    def __init__(self, name: str = "linear_probe") -> None:
        super().__init__(name)

    def trainable(self, backbone: nn.Module) -> list[str]:
        return []


class BitFit(Strategy):
    """Only bias terms train (0.1 % of ViT-B's parameters)."""

    freezes_base = True
    bn_statistics = "frozen"

    def __init__(self, name: str = "bitfit", lr_mult: float | None = None) -> None:
        super().__init__(name)
        self.lr_mult = lr_mult
        self._args = {"lr_mult": lr_mult}

    def trainable(self, backbone: nn.Module) -> list[str]:
        return matching([n for n, _ in backbone.named_parameters() if n.endswith(".bias")], "biases", self.name)

    def lr_scale(self, name: str) -> float | None:
        return self.lr_mult


class NormTuning(Strategy):
    """Only the normalisation layers' scale and shift train."""

    freezes_base = True

    def __init__(self, name: str = "norm", lr_mult: float | None = None) -> None:
        super().__init__(name)
        self.lr_mult = lr_mult
        self._args = {"lr_mult": lr_mult}

    def trainable(self, backbone: nn.Module) -> list[str]:
        names = [f"{m_name}.{p_name}" if m_name else p_name
                 for m_name, m in backbone.named_modules() if isinstance(m, NORM_LAYERS)
                 for p_name, _ in m.named_parameters(recurse=False)]
        return matching(names, "normalisation layers with affine parameters", self.name)

    def lr_scale(self, name: str) -> float | None:
        return self.lr_mult
