"""Optimizer parameter groups of backbone parameters: strategy LR multiples, layer decay, no-decay names."""
from __future__ import annotations

from torch import nn

from cifar_ft.backbones import no_weight_decay_names
from cifar_ft.models.optim import param_groups
from cifar_ft.strategies import FinetuningStrategy


def backbone_groups(backbone: nn.Module, names: list[str], tag: str, strategy: FinetuningStrategy,
                    backbone_lr_mult: float, layer_decay: float | None,
                    layer_ids: dict[str, int] | None) -> list[dict]:
    """Decay / no-decay groups for the named backbone parameters, tagged `tag` (the freeze group), at
    `backbone_lr_mult` x the base LR, or the strategy's own `lr_scale` for its parameters (adapters,
    prompts; groups named `tag.x<scale>` when a set mixes scales). With `layer_decay`, one pair per
    layer group, where group i of n (`layer_ids`: timm's group_matcher, input side first) gets a further
    `layer_decay ** (n - i)` (the head, at the top, has depth 0: timm's `param_groups_layer_decay`
    convention): an adapter gets the decay of the block it sits in."""
    by_scale: dict[float, list[str]] = {}
    for n in names:
        scale = strategy.lr_scale(n)
        by_scale.setdefault(backbone_lr_mult if scale is None else float(scale), []).append(n)
    skip = no_weight_decay_names(backbone) | strategy.no_weight_decay(backbone)
    params = dict(backbone.named_parameters())
    groups = []
    for mult, members in by_scale.items():
        name = f"{tag}.x{mult:g}" if len(by_scale) > 1 else tag
        groups += _decayed(params, members, tag, name, mult, skip, layer_decay, layer_ids)
    return groups


def _decayed(params: dict[str, nn.Parameter], names: list[str], tag: str, name: str, mult: float, skip: set[str],
             layer_decay: float | None, layer_ids: dict[str, int] | None) -> list[dict]:
    if not layer_decay or layer_ids is None:
        return [dict(g, tag=tag) for g in param_groups([(n, params[n]) for n in names], name, mult, skip)]
    depth = max(layer_ids.values()) + 1
    layers = sorted({layer_ids[n] for n in names}, reverse=True)  # deepest first
    groups = []
    for layer in layers:
        members = [(n, params[n]) for n in names if layer_ids[n] == layer]
        label = name if len(layers) == 1 else f"{name}.L{layer}"
        groups += [dict(g, tag=tag) for g in param_groups(members, label, mult * layer_decay ** (depth - layer), skip)]
    return groups
