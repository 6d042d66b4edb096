"""`model.source=timm`: any timm model by name, headless, with offline-aware pretrained weights."""
from __future__ import annotations

import os

import timm
from torch import nn

from cifar_ft.backbones.offline import host_reachable
from cifar_ft.errors import ConfigError, close_matches


def check_name(name: str) -> None:
    if not timm.is_model(name):
        raise ConfigError(f"model.backbone={name!r} is not a timm model."
                          f"{close_matches(name, timm.list_models())} (list: timm.list_models('*pattern*'))")


def create(name: str, pretrained: bool, input_size: int | None, drop_path_rate: float) -> nn.Module:
    kwargs: dict = {"num_classes": 0, **architecture_args(name, input_size)}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    cfg = timm.models.get_pretrained_cfg(name)
    if pretrained:
        kwargs.update(_weights_source(name, cfg))
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def architecture_args(name: str, input_size: int | None) -> dict:
    """timm.create_model arguments that change the architecture for this input size: ViTs have a fixed
    patch grid, so one built at another resolution gets `img_size` (pos_embed interpolated)."""
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is not None and cfg.fixed_input_size and input_size and input_size != cfg.input_size[-1]:
        return {"img_size": input_size}
    return {}


def _weights_source(name: str, cfg) -> dict:
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
