"""Loading files someone may have shared, safely, and backbone weights from them, fully checked.

No code runs on load: torch files are read with `weights_only=True` (tensors, numbers, strings,
lists, dicts) and a file whose pickle would import anything else is refused in one line naming it,
unless the user opts in with `trust_checkpoint=true`. `.safetensors` holds tensors only and is the
preferred format. Accepts `.pth`/`.pt`/`.bin` (torch files), `.safetensors`, and `.ckpt` files written
by cifar_ft. A weights file must provide every backbone tensor (the classifier excepted).

State dicts in a foreign naming convention are converted by the `CONVENTIONS` registry:
EfficientNet-PyTorch (keys `_conv_stem`, `_blocks.N...`) maps onto timm's names by position, since
the two architectures list the same tensors in the same order.
"""
from __future__ import annotations

import logging
import pickle
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_ft.errors import ConfigError
from cifar_ft.plain import find_directive

log = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt")
# Classifier names of the ImageNet heads we drop (timm, torchvision, EfficientNet-PyTorch, ours).
HEAD_PREFIXES = ("fc.", "head.", "classifier.", "_fc.", "head.fc.", "last_linear.")
# Prefixes wrappers add: DDP, torch.compile, our LightningModule.
WRAPPER_PREFIXES = ("module.", "_orig_mod.", "model.")


def unsafe_globals(path: Path) -> list[str]:
    """What the file's pickle would import beyond torch's weights-only allow-list (read without
    loading any tensor data); [] for a safe file or one that is not a torch zip file."""
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # noqa: BLE001 - not a zip-format torch file: torch.load decides below
        return []


def _refusal(key: str, path: Path, names: list[str]) -> ConfigError:
    return ConfigError(
        f"{key}={str(path)!r} is refused: loading it would run code it carries ({', '.join(names[:3])}); "
        "checkpoints and weights load only tensors, numbers, strings, lists and dicts. If you trust "
        "where it came from, add trust_checkpoint=true (and share weights as .safetensors)")


def refuse_unsafe(path: str | Path, key: str, trust: bool = False) -> None:
    """Raise the one-line refusal if loading `path` would run code (and the user did not trust it)."""
    if not trust and (names := unsafe_globals(Path(path).expanduser())):
        raise _refusal(key, Path(path), names)


def load_torch_file(path: str | Path, key: str, trust: bool = False, mmap: bool = False) -> Any:
    """`torch.load` on the CPU with `weights_only=True` unless `trust`; one-line errors for files that
    need code (naming what they would import) and for files that cannot be read. `mmap`: map the
    tensors instead of reading them, where the file is a zip-format torch file (legacy files are read)."""
    path = Path(path).expanduser()
    refuse_unsafe(path, key, trust)
    try:
        with warnings.catch_warnings():  # a raw pickle's protocol notice, ahead of our one line about it
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=not trust, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as exc:  # weights-only refusal of a file the scan could not read
        names = re.findall(r"GLOBAL ([\w.]+)", str(exc))
        if names:
            raise _refusal(key, path, names) from exc
        # torch's text opens with advice to turn its safe loading off: quote only the reason it failed
        found = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n|$)", str(exc))
        reason = found.group(1) if found else (str(exc).strip().splitlines() or [""])[-1]
        raise ConfigError(f"{key}={str(path)!r} is not a readable torch file (unpickling failed: {reason}); "
                          "a truncated download or another format? Check the file") from exc
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files raise many types
        first = str(exc).strip().splitlines()[0].split(". ")[0] if str(exc).strip() else ""  # torch's first sentence
        raise ConfigError(f"{key}={str(path)!r} cannot be read ({type(exc).__name__}: {first}); a truncated or "
                          "corrupt file? Copy or download it again") from exc


def check_weights_file(path: str | Path, trust: bool = False) -> None:
    """`model.pretrained=FILE`, before the run starts: a torch file must hold no instantiation directive
    anywhere (a crafted `.ckpt`), and its state dict only named tensors (`read_state_dict`)."""
    path = Path(path).expanduser()
    if path.suffix == ".safetensors" or not path.is_file():
        return
    obj = load_torch_file(path, "model.pretrained", trust, mmap=True)
    if (found := find_directive(obj)) is not None:
        raise ConfigError(f"model.pretrained={str(path)!r} is refused: it holds an instantiation directive at "
                          f"{found}; weights files hold tensors (a crafted file?). Nothing in it was used")
    _state_dict_of(obj, path)


def read_state_dict(path: str | Path, trust: bool = False) -> dict[str, torch.Tensor]:
    """Read a tensor dict from any supported file; unwrap `state_dict`/`model` containers."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained={str(path)!r}: no such weights file "
                          f"(expected a file ending in {', '.join(WEIGHT_SUFFIXES)})")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(f"model.pretrained={str(path)!r}: unsupported suffix {path.suffix!r}; "
                          f"valid: {', '.join(WEIGHT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ConfigError(f"model.pretrained={str(path)!r} cannot be read as safetensors ({exc}); a truncated "
                              "or corrupt file: download or export it again") from exc
    return _state_dict_of(load_torch_file(path, "model.pretrained", trust), path)


def _state_dict_of(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict):
        raise ConfigError(f"model.pretrained={str(path)!r}: holds a {type(obj).__name__}, not a state dict")
    # only named tensors are used from a weights file (a counter beside them is dropped); a mapping, list
    # or string there is no weight at all
    odd = next((k for k, v in obj.items() if not isinstance(k, str) or isinstance(v, (str, dict, list, tuple))), None)
    if odd is not None:
        raise ConfigError(f"model.pretrained={str(path)!r}: its state dict holds {odd!r}, which is not a named "
                          "tensor; refused (a crafted or damaged file?)")
    return _strip_prefixes({k: v for k, v in obj.items() if isinstance(v, torch.Tensor)})


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


def load_into(model: nn.Module, path: str | Path, trust: bool = False) -> int:
    """Load a weights file into a backbone built with `num_classes=0`; fails (one line, with examples
    of the missing and unexpected keys) unless every backbone tensor is in the file with its shape.
    Returns the number of tensors loaded."""
    origin = f"model.pretrained={str(path)!r}"
    target = model.state_dict()
    sd = to_model_names(read_state_dict(path, trust), target, origin)
    sd = {k: v for k, v in sd.items() if not (k.startswith(HEAD_PREFIXES) and k not in target)}
    for key, value in sd.items():
        if key in target and target[key].shape != value.shape:
            raise ConfigError(f"{origin}: key {key!r} has shape {tuple(value.shape)}, "
                              f"the model expects {tuple(target[key].shape)}")
    needed = [k for k in target if not k.endswith("num_batches_tracked")]
    missing = [k for k in needed if k not in sd]
    unexpected = [k for k in sd if k not in target]
    if missing:
        raise ConfigError(f"{origin}: {len(missing)} of the backbone's {len(needed)} tensors are not in the "
                          f"file (e.g. {', '.join(missing[:3])}); {len(unexpected)} of its {len(sd)} tensors "
                          f"match none (e.g. {', '.join(unexpected[:3]) or '-'}): weights of another "
                          "architecture? Nothing was loaded")
    if unexpected:
        log.warning("%s: %d tensors that match no backbone parameter ignored, e.g. %s", origin,
                    len(unexpected), unexpected[:5])
    model.load_state_dict({k: v for k, v in sd.items() if k in target}, strict=False)
    log.info("%s: loaded %d of %d backbone tensors", origin, len(needed), len(needed))
    return len(needed)
