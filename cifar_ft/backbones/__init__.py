"""Pretrained feature extractors: `create_backbone` over the `SOURCES` registry, and their layer groups.

Every backbone returned maps images (B, 3, H, W) to pooled features (B, `feature_width(backbone)`), has no
classifier, and can be split into layer groups (timm's `group_matcher`) for gradual unfreezing and
layer-wise LR decay. Plain torch: no Lightning, no Hydra (import-linter contract).

Add a source: in a module of this package, `create(name, pretrained: bool, input_size,
drop_path_rate) -> nn.Module` and `check_name(name)` (raises ConfigError for an unknown name, cheaply,
before anything is built), and a `Source` entry in `SOURCES`. Add an offline weights package:
`offline.PACKAGES`.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass

from torch import nn

from cifar_ft.backbones import offline
from cifar_ft.backbones.weights import load_into
from cifar_ft.errors import ConfigError, check_choice


@dataclass(frozen=True)
class Source:
    """A backbone source: the module with `create(name, pretrained: bool, input_size, drop_path_rate) -> headless
    model` and `check_name(name)` (ConfigError for a name it does not have), imported when first used (timm and
    torchvision cost seconds that a one-line config error should not)."""

    module: str

    def load(self):
        return importlib.import_module(self.module)


# model.source -> where backbones come from
SOURCES: dict[str, Source] = {
    "timm": Source("cifar_ft.backbones.timm_models"),
    "torchvision": Source("cifar_ft.backbones.torchvision_models"),
}


def check_backbone(name: str, source: str) -> None:
    """ConfigError unless `source` is known and has a backbone called `name` (nothing is built)."""
    SOURCES[check_choice("model.source", source, SOURCES)].load().check_name(name)


def create_backbone(name: str, pretrained: bool | str = True, source: str = "timm",
                    input_size: int | None = None, drop_path_rate: float = 0.0,
                    trust_weights: bool = False) -> nn.Module:
    """A headless backbone with attribute `num_features`. `pretrained`: True (hub/torchvision weights,
    local cache when offline), False, a key of `offline.PACKAGES`, or a path to a weights file
    (`trust_weights`: allow one that needs code to load)."""
    check_backbone(name, source)
    model = SOURCES[source].load().create(name, pretrained is True, input_size, drop_path_rate)
    if isinstance(pretrained, str):
        load_into(model, offline.weights_file(pretrained), trust_weights)
    return model


def feature_width(backbone: nn.Module) -> int:
    """The width of the pooled features the backbone outputs: timm's `head_hidden_size` where the model
    keeps a head stage of its own after pooling (MobileNetV3's and GhostNet's conv head: 1,024 or 1,280
    out of 576 or 960 `num_features`), else `num_features`."""
    hidden = getattr(backbone, "head_hidden_size", None)
    return int(hidden) if isinstance(hidden, int) and hidden > 0 else int(backbone.num_features)


def layer_groups(backbone: nn.Module, patterns: list[str] | None = None) -> list[list[str]]:
    """Parameter names per layer group, input side first (timm's `group_matcher`, or regexes)."""
    names = [n for n, _ in backbone.named_parameters()]
    if patterns:
        groups = []
        for pattern in patterns:
            matched = [n for n in names if re.search(pattern, n)]
            if not matched:
                raise ConfigError(f"callbacks.freeze.groups: pattern {pattern!r} matches no backbone "
                                  f"parameter (names look like {names[0]!r} ... {names[-1]!r})")
            groups.append(matched)
        return groups
    if not hasattr(backbone, "group_matcher"):
        raise ConfigError(f"backbone {type(backbone).__name__} has no timm group_matcher; use "
                          "callbacks.freeze.unfreeze=all or give callbacks.freeze.groups=[regex,...]")
    from timm.models import group_parameters

    grouped = group_parameters(backbone, backbone.group_matcher(coarse=False))
    return [list(v) for _, v in sorted(grouped.items())]


def no_weight_decay_names(backbone: nn.Module) -> set[str]:
    """Parameters the model itself declares decay-free (timm's `no_weight_decay`: tokens, embeddings)."""
    declared = getattr(backbone, "no_weight_decay", None)
    return set(declared()) if callable(declared) else set()


def prefers_channels_last(backbone: nn.Module) -> bool:
    """Convolutional networks run faster in NHWC (cuDNN and oneDNN alike: 1.7x for Lite0 on a 2-core
    CPU); transformers, whose only convolution is the patch embedding, gain nothing."""
    return sum(isinstance(m, nn.Conv2d) for m in backbone.modules()) > 1


def check_test_size(backbone: nn.Module, name: str, input_size: int, test_input_size: int | None) -> None:
    """`model.test_input_size` (FixRes) needs a backbone that takes any input size: CNNs do; a timm
    ViT built for one size (`patch_embed.strict_img_size`) does not."""
    if test_input_size and getattr(getattr(backbone, "patch_embed", None), "strict_img_size", False):
        raise ConfigError(f"model.test_input_size={test_input_size}: {name} takes only {input_size} px inputs; a "
                          "test resolution needs a CNN (or a ViT with dynamic_img_size)")
