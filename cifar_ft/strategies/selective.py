"""Strategies that train a subset of the pretrained parameters as they are (nothing injected).

- `full` / `lp_ft` / `gradual`: every backbone parameter (the freeze schedule decides when: from the
  first unfrozen epoch, after a linear-probe phase, or layer group by layer group).
- `linear_probe`: none; only the head trains, on cached features (the backbone stays frozen).
- `bitfit`: the biases (Ben Zaken et al., "BitFit", ACL 2022).
- `norm`: the affine parameters of the normalisation layers (LayerNorm, BatchNorm, GroupNorm); trained
  BatchNorm layers also update their running statistics.
- `partial`: every parameter but those of the first `frozen_groups` layer groups (input side), which
  keep their pretrained weights and BatchNorm statistics (Yosinski et al., "How transferable are
  features in deep neural networks?", NeurIPS 2014). Autograd then skips the backward pass through
  them, which on a CPU is most of their cost (README, "Time-to-accuracy levers"); with
  `frozen_precision` bf16 (or auto) their forward in training steps runs in bf16 (precision.py).
"""
from __future__ import annotations

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from cifar_ft.backbones import layer_groups
from cifar_ft.errors import ConfigError
from cifar_ft.strategies.base import Strategy, matching
from cifar_ft.strategies.precision import Bf16Forward, outermost
from cifar_ft.strategies.precision import frozen_precision as _frozen_precision

NORM_LAYERS = (nn.LayerNorm, _BatchNorm, nn.GroupNorm)  # timm's LayerNorm2d etc. subclass these


BN_STATISTICS = ("trained", "frozen")


def _bn_statistics(value: str) -> str:
    """`strategy.bn_statistics` checked: `trained` (BatchNorm layers that train update their running
    statistics, the usual fine-tuning) or `frozen` (every BatchNorm layer normalises with the pretrained
    statistics for the whole run, its scale and shift still training)."""
    if value not in BN_STATISTICS:
        raise ConfigError(f"strategy.bn_statistics={value!r} is not one of: {', '.join(BN_STATISTICS)}")
    return value


class Full(Strategy):
    """The whole backbone trains (once the schedule unfreezes it): today's default fine-tuning."""

    def __init__(self, name: str = "full", bn_statistics: str = "trained") -> None:
        super().__init__(name)
        self.bn_statistics = _bn_statistics(bn_statistics)
        self._args = {"bn_statistics": bn_statistics} if bn_statistics != "trained" else {}

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


class Partial(Strategy):
    """The deep end trains as in `full`; the first `frozen_groups` layer groups (timm's `group_matcher`,
    the groups of layer decay and gradual unfreezing, input side first) never do. `frozen_precision`
    bf16 (or auto: where the device has bf16 units) computes their forward in bf16 during training
    steps (cifar_ft.strategies.precision: forwards wrapped by `prepare`)."""

    def __init__(self, name: str = "partial", frozen_groups: int = 1, bn_statistics: str = "trained",
                 frozen_precision: str = "fp32") -> None:
        super().__init__(name)
        self.bn_statistics = _bn_statistics(bn_statistics)
        self.frozen_precision = _frozen_precision(frozen_precision)
        if isinstance(frozen_groups, bool) or not isinstance(frozen_groups, int) or frozen_groups < 1:
            raise ConfigError(f"strategy.frozen_groups={frozen_groups!r} must be an integer >= 1 (the number "
                              "of layer groups, from the input side, that keep their pretrained weights)")
        self.frozen_groups = frozen_groups
        self._args = {"frozen_groups": frozen_groups,
                      **({"bn_statistics": bn_statistics} if bn_statistics != "trained" else {}),
                      **({"frozen_precision": frozen_precision} if frozen_precision != "fp32" else {})}

    def prepare(self, backbone: nn.Module) -> None:
        """With frozen_precision bf16 or auto: the bf16 wrapper on the frozen groups' largest modules."""
        if self.frozen_precision != "fp32":
            Bf16Forward(backbone, self.frozen_precision).attach(outermost(backbone, self._frozen(backbone)))

    def trainable(self, backbone: nn.Module) -> list[str]:
        frozen = self._frozen(backbone)
        return [n for n, _ in backbone.named_parameters() if n not in frozen]

    def _frozen(self, backbone: nn.Module) -> set[str]:
        groups = layer_groups(backbone)
        if self.frozen_groups >= len(groups):
            raise ConfigError(f"strategy.frozen_groups={self.frozen_groups} leaves nothing to train: this "
                              f"backbone has {len(groups)} layer groups; use 1..{len(groups) - 1} "
                              "(or strategy=linear_probe)")
        return {n for g in groups[:self.frozen_groups] for n in g}
