"""Loading backbone weights from local files, with every shape checked.

Accepts `.pth`/`.pt`/`.bin` (torch pickles), `.safetensors`, and Lightning `.ckpt` files written by
cifar_ft. State dicts in a foreign naming convention are converted by the `CONVENTIONS` registry:
EfficientNet-PyTorch (keys `_conv_stem`, `_blocks.N...`) maps onto timm's names by position, since
the two architectures list the same tensors in the same order.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cifar_ft.errors import ConfigError

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# Classifier names of the ImageNet heads we drop (timm, torchvision, EfficientNet-PyTorch, ours).
HEAD_PREFIXES = ("fc.", "head.", "classifier.", "_fc.", "head.fc.", "last_linear.")
# Prefixes wrappers add: DDP, torch.compile, our LightningModule.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a tensor dict from any supported file; unwrap `state_dict`/`model` containers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained={str(path)!r}: no such weights file "
                          f"(expected a file ending in {', '.join(WEIGHT_SUFFIXES)})")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"model.pretrained={str(path)!r}: unsupported suffix {path.suffix!r}; "
                          f"valid: {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=path.suffix != ".ckpt")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConfigError(f"model.pretrained={str(path)!r}: holds a {type(obj).__name__}, not a state dict")
    return _strip_prefixes(obj)


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Our checkpoints hold `backbone.*` and `head.*`; keep the backbone, drop our head.
    if any(k.startswith("backbone.") for k in sd):
        return {k[len("backbone."):]: v for k, v in sd.items() if k.startswith("backbone.")}
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def convert_by_position(src: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                        origin: str) -> dict[str, torch.Tensor]:
    """Map `src` onto `target`'s key names in order, verifying every shape (heads excluded)."""
    src_items = [(k, v) for k, v in src.items() if not k.startswith(HEAD_PREFIXES)]
    tgt_items = [(k, v) for k, v in target.items() if not k.startswith(HEAD_PREFIXES)]
    if len(src_items) != len(tgt_items):
        raise ConfigError(f"{origin}: {len(src_items)} tensors cannot map onto the model's "
                          f"{len(tgt_items)} (different architecture?)")
    out = {}
    for (sk, sv), (tk, tv) in zip(src_items, tgt_items):
        if sv.shape != tv.shape:
            raise ConfigError(f"{origin}: key {sk!r} has shape {tuple(sv.shape)} but maps onto "
                              f"{tk!r} with shape {tuple(tv.shape)}")
        out[tk] = sv
    return out


# name -> (recognises a state dict in that convention, converts it onto the target's names)
CONVENTIONS: dict[str, tuple[Callable[[dict], bool], Callable[[dict, dict, str], dict]]] = {
    "efficientnet-pytorch": (lambda sd: "_conv_stem.weight" in sd, convert_by_position),
}


def to_model_names(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], origin: str) -> dict:
    """`sd` in the target's naming: converted when a known foreign convention recognises it."""
    for recognises, convert in CONVENTIONS.values():
        if recognises(sd):
            return convert(sd, target, origin)
    return sd


def load_into(model: nn.Module, path: str | Path) -> None:
    """Load a weights file into a backbone built with `num_classes=0`, failing on any mismatch."""
    origin = f"weights file {str(path)!r}"
    target = model.state_dict()
    sd = to_model_names(read_state_dict(path), target, origin)
    sd = {k: v for k, v in sd.items() if not (k.startswith(HEAD_PREFIXES) and k not in target)}
    for key, value in sd.items():
        if key in target and target[key].shape != value.shape:
            raise ConfigError(f"{origin}: key {key!r} has shape {tuple(value.shape)}, "
                              f"the model expects {tuple(target[key].shape)}")
    missing = [k for k in target if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in target]
    if missing and len(missing) == len(target):
        raise ConfigError(f"{origin}: none of its {len(sd)} keys match the model "
                          f"(first file key {next(iter(sd), None)!r}, first model key {next(iter(target))!r})")
    if missing:
        log.warning("%s: %d missing keys, e.g. %s", origin, len(missing), missing[:5])
    if unexpected:
        log.warning("%s: %d unexpected keys ignored, e.g. %s", origin, len(unexpected), unexpected[:5])
    model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=False)
    log.info("Loaded %d tensors from %s", len(sd) - len(unexpected), path)
