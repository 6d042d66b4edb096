"""Fine-tuning strategies: what trains, how the model is shaped for it, what checkpoints and exports hold.

One registry, `STRATEGIES` (`strategy=<name>`, config group conf/strategy/), one contract,
`FinetuningStrategy` (base.py). The freeze schedule drives a strategy's phases (when its parameters
unfreeze); the LightningModule asks it for parameter groups, small checkpoints and the merged export.

Add a strategy: a class implementing `FinetuningStrategy` (subclass `base.Strategy` for the
defaults), an entry here, and conf/strategy/<name>.yaml (`_target_` + its arguments, and any
`callbacks.freeze` schedule it implies). Plain torch (peft where it does the job): no Lightning, no Hydra.
"""
from __future__ import annotations

from collections.abc import Callable

from cifar_ft.errors import check_choice
from cifar_ft.strategies.base import FinetuningStrategy, Strategy
from cifar_ft.strategies.lora import LoRA
from cifar_ft.strategies.selective import BitFit, Full, LinearProbe, NormTuning, Partial
from cifar_ft.strategies.vpt import VPT

# strategy=<name> -> the class that builds it (rebuilt from checkpoints as STRATEGIES[name](**spec))
STRATEGIES: dict[str, Callable[..., FinetuningStrategy]] = {
    "full": Full,
    "lp_ft": Full,          # the schedule probes first (conf/strategy/lp_ft.yaml)
    "gradual": Full,        # the schedule unfreezes layer groups one by one (conf/strategy/gradual.yaml)
    "linear_probe": LinearProbe,
    "bitfit": BitFit,
    "norm": NormTuning,
    "partial": Partial,     # the first strategy.frozen_groups layer groups stay pretrained
    "partial_bn": Partial,  # ... with every BatchNorm's statistics adapting (conf/strategy/partial_bn.yaml)
    "lora": LoRA,
    "dora": LoRA,           # use_dora: true (conf/strategy/dora.yaml)
    "vpt": VPT,
}


def build_strategy(spec: dict | FinetuningStrategy | None) -> FinetuningStrategy:
    """A strategy object, or one rebuilt from its `spec()` (checkpoints), or `full` for None (checkpoints
    written before strategies existed)."""
    if spec is None:
        return Full()
    if isinstance(spec, FinetuningStrategy):
        return spec
    spec = dict(spec)
    name = check_choice("strategy", spec.get("name"), STRATEGIES)
    return STRATEGIES[name](**spec)


__all__ = ["STRATEGIES", "FinetuningStrategy", "Strategy", "build_strategy"]
