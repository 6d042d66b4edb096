"""The contract every fine-tuning strategy implements (`FinetuningStrategy`) and its common base.

A strategy says *what* trains and *how the model is shaped* for it; the freeze schedule
(cifar_ft.callbacks.freeze) says *when*: it unfreezes, epoch by epoch, layer groups of exactly the
parameters `trainable()` names, and never anything else. Plain torch: no Lightning, no Hydra.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

from cifar_ft.errors import ConfigError


@runtime_checkable
class FinetuningStrategy(Protocol):
    """When each method is called, and by whom:

    - `prepare(backbone)`: once, by the LightningModule's constructor, right after the pretrained
      weights are loaded and before any optimizer or checkpoint exists; injects what the strategy adds
      (adapters, prompts) in place, or wraps modules' forward without adding state (partial's bf16 frozen
      groups: cifar_ft.strategies.precision). A checkpoint is loaded into the prepared model, so a
      resume never injects twice.
    - `trainable(backbone)`: backbone parameter names (`named_parameters()` of the prepared backbone)
      that train once the schedule has unfrozen their layer group; every other backbone parameter stays
      frozen for the whole run (the head always trains). Read by the freeze schedule at setup.
    - `lr_scale(name)`: the peak-LR multiple of a trainable backbone parameter, or None for the model's
      `backbone_lr_mult` (new weights such as adapters usually train at the head's LR); layer decay
      then multiplies in the decay of the layer the parameter sits in.
    - `no_weight_decay(backbone)`: extra names exempt from weight decay (prompts, DoRA magnitudes).
    - `freezes_base`: True when no pretrained weight ever changes; checkpoints may then leave the base
      weights out (`model.small_checkpoints`), recording their content hash instead.
    - `bn_statistics`: `trained`: a BatchNorm layer whose parameters train also updates its running
      statistics (full, partial, norm); `frozen`: they never change (the pretrained normalisation is
      part of the frozen base: bitfit trains BatchNorm biases on top of it, adapters see it fixed;
      full and partial take it as `strategy.bn_statistics=frozen`). Read by the freeze schedule
      whenever it sets the modules' train/eval modes.
    - `merged(backbone)`: at export, a plain module with the backbone's original architecture and
      parameter names, adapters folded into the weights (a ConfigError where that cannot exist).
    - `spec()`: the constructor arguments, plain values, saved in checkpoints to rebuild the strategy.
    """

    name: str
    freezes_base: bool
    bn_statistics: str

    def prepare(self, backbone: nn.Module) -> None: ...

    def trainable(self, backbone: nn.Module) -> list[str]: ...

    def lr_scale(self, name: str) -> float | None: ...

    def no_weight_decay(self, backbone: nn.Module) -> set[str]: ...

    def merged(self, backbone: nn.Module) -> nn.Module: ...

    def spec(self) -> dict: ...


class Strategy:
    """Defaults for the contract: nothing injected, backbone LR for everything, merged = the backbone."""

    freezes_base = False
    bn_statistics = "trained"

    def __init__(self, name: str) -> None:
        self.name = name
        self._args: dict = {}

    def prepare(self, backbone: nn.Module) -> None:
        """Nothing to inject."""

    def trainable(self, backbone: nn.Module) -> list[str]:
        raise NotImplementedError

    def lr_scale(self, name: str) -> float | None:
        return None

    def no_weight_decay(self, backbone: nn.Module) -> set[str]:
        return set()

    def merged(self, backbone: nn.Module) -> nn.Module:
        return backbone

    def spec(self) -> dict:
        return {"name": self.name, **self._args}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._args.items())
        return f"{type(self).__name__}({self.name!r}{', ' if args else ''}{args})"


def matching(names: list[str], what: str, strategy: str) -> list[str]:
    """`names` unless empty: a strategy with nothing to train on this backbone is a config error."""
    if not names:
        raise ConfigError(f"strategy={strategy}: this backbone has no {what} to train")
    return names
