"""The strategy node's schemas (`strategy=<name>`): each strategy's options, their types, defaults,
valid values and help. Light: no torch (the LoRA target presets are looked up when a value is checked)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from cifar_ft.schema import knob, schema

BN_STATISTICS = ("trained", "frozen", "adapt")
FROZEN_PRECISIONS = ("fp32", "bf16", "auto")
BN_HELP = ("trained: BatchNorm layers that train update their running statistics | frozen: every BatchNorm "
           "keeps its pretrained statistics | adapt: every BatchNorm's statistics adapt, frozen layers' included")
LR_MULT_HELP = "peak LR of what this strategy trains = optimizer.lr * this (null: model.backbone_lr_mult)"


def _regex(v: object) -> bool:
    try:
        return re.compile(str(v)) is not None
    except re.error:
        return False


def _lora_targets() -> list[str]:
    from cifar_ft.strategies.lora import LORA_TARGETS

    return list(LORA_TARGETS)


@dataclass
class StrategyOptions:
    name: str = knob("???", "the strategy's registry name (strategies.STRATEGIES), recorded in checkpoints")
    frozen_epochs: int = knob(0, "epochs the backbone stays frozen first (the head trains alone, on cached "
                                 "features); the freeze schedule (callbacks.freeze) runs it", ge=0)


@schema("strategy", "full")
@dataclass
class FullOptions(StrategyOptions):
    """Every backbone parameter trains once the freeze schedule unfreezes it (`selective.Full`)."""

    _target_: str = "cifar_ft.strategies.selective.Full"
    frozen_epochs: int = knob(1, "epochs the backbone stays frozen first (the head trains alone, on cached "
                                 "features); the freeze schedule (callbacks.freeze) runs it", ge=0)
    bn_statistics: str = knob("trained", BN_HELP, choices=BN_STATISTICS)


@schema("strategy", "linear_probe")
@dataclass
class LinearProbeOptions(StrategyOptions):
    """Nothing of the backbone trains: a linear classifier on frozen features (`selective.LinearProbe`)."""

    _target_: str = "cifar_ft.strategies.selective.LinearProbe"


@schema("strategy", "bitfit")
@dataclass
class BitFitOptions(StrategyOptions):
    """Only the backbone's biases train (`selective.BitFit`)."""

    _target_: str = "cifar_ft.strategies.selective.BitFit"
    lr_mult: float | None = knob(1.0, LR_MULT_HELP, ge=0.0)


@schema("strategy", "norm")
@dataclass
class NormOptions(StrategyOptions):
    """Only the backbone's normalisation layers train (`selective.NormTuning`)."""

    _target_: str = "cifar_ft.strategies.selective.NormTuning"
    lr_mult: float | None = knob(1.0, LR_MULT_HELP, ge=0.0)


@schema("strategy", "partial")
@dataclass
class PartialOptions(StrategyOptions):
    """The input-side layer groups keep their pretrained weights (`selective.Partial`)."""

    _target_: str = "cifar_ft.strategies.selective.Partial"
    bn_statistics: str = knob("trained", BN_HELP, choices=BN_STATISTICS)
    frozen_groups: int = knob(6, "input-side layer groups (timm's group_matcher) that stay frozen "
                                 "(Lite0 has 18: 6 = the stem and first three stages)", ge=1)
    frozen_precision: str = knob("fp32", "the frozen groups' forward in training steps: fp32 | bf16 | auto "
                                         "(bf16 where the device computes it in hardware)", choices=FROZEN_PRECISIONS)


@schema("strategy", "lora")
@dataclass
class LoRAOptions(StrategyOptions):
    """Low-rank adapters beside frozen weights, through peft (`lora.LoRA`); DoRA with use_dora."""

    _target_: str = "cifar_ft.strategies.lora.LoRA"
    rank: int = knob(8, "the adapters' rank r (at most the narrowest adapted layer's width, checked when built)", ge=1)
    alpha: float = knob(16.0, "scale alpha / rank", gt=0.0)
    dropout: float = knob(0.0, "on the adapter input", ge=0.0, lt=1.0)
    targets: str = knob("auto", "auto (ViT/DeiT: qkv, proj, fc1, fc2; ConvNets: 1x1 convolutions) | "
                                "attention_mlp | pointwise", choices=_lora_targets)
    target_regex: str | None = knob(None, "instead of targets: modules whose name matches this regex",
                                    check=_regex, valid="null or a valid regex")
    use_dora: bool = knob(False, "weight-decomposed adapters (DoRA)")
    lr_mult: float | None = knob(1.0, LR_MULT_HELP, ge=0.0)


@schema("strategy", "vpt")
@dataclass
class VPTOptions(StrategyOptions):
    """Visual prompt tuning: learned tokens in a frozen ViT (`vpt.VPT`)."""

    _target_: str = "cifar_ft.strategies.vpt.VPT"
    tokens: int = knob(10, "prompt tokens per layer", ge=1)
    deep: bool = knob(True, "a prompt per block (false: before the first only)")
    dropout: float = knob(0.0, "on the prompts", ge=0.0, lt=1.0)
    lr_mult: float | None = knob(1.0, LR_MULT_HELP, ge=0.0)
