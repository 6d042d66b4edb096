"""What a checkpoint says, checked as plain data before any of it is used.

The rule (README, "Safe to share"): no value read from a file decides what code runs. A checkpoint is
loaded without code (`torch.load(weights_only=True)`: tensors, numbers, strings, lists, dicts), and
then `check_checkpoint` refuses it, in one line and before anything is built or written, when:
- any mapping anywhere in it holds an instantiation directive (`_target_`, `_partial_`, Lightning's
  `_instantiator`, jsonargparse's `class_path`, ...: `plain.DIRECTIVES`), except the one
  legacy place where older checkpoints named their data module by its registered `_target_` path;
- its model hyperparameters hold a field `ImageClassifier` does not take (an option group holding a
  field that group lacks; older checkpoints: a flat model key), or a value that is not plain (the
  strategy is a registry name with that strategy's own plain options);
- its data provenance, small-checkpoint base record or preprocessing record is not what we write;
- its `state_dict` holds anything but tensors.
What is then used is looked up in registries (`STRATEGIES`, `SOURCES`, `data.registry.DATA_MODULES`),
never imported, instantiated or unpickled.
"""
from __future__ import annotations

import numbers
from dataclasses import fields
from typing import Any

import torch

from cifar_ft.data.registry import TARGETS
from cifar_ft.errors import ConfigError
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.options import FLAT, GROUPS, flat_hparams, is_flat
from cifar_ft.plain import find_directive, keyword_arguments, plain
from cifar_ft.runs.provenance import DATA_KEY, check_provenance
from cifar_ft.strategies import STRATEGIES
from cifar_ft.strategies.checkpoint import BASE_KEY

PREPROCESSING_KEY = "preprocessing"
TRACKERS_KEY = "trackers"  # tracker name -> the id of its run (runs/tracking.py: a resumed run continues it)


HPARAMS = keyword_arguments(ImageClassifier) or set()
LEGACY = set(FLAT)  # the flat model keys checkpoints held before the options were grouped


def _crafted(where: str, what: str) -> ConfigError:
    return ConfigError(f"{where} is refused: {what}; cifar_ft never writes that (a crafted or damaged file?). "
                       "Nothing in it was used")


def _registered(ckpt: dict) -> bool:
    """Older checkpoints named their data module by its `_target_` path: harmless when it is registered."""
    config = (ckpt.get(DATA_KEY) or {}).get("config") if isinstance(ckpt.get(DATA_KEY), dict) else None
    target = config.get("_target_") if isinstance(config, dict) else None
    return isinstance(target, str) and target in TARGETS


def check_hparams(hparams: Any, where: str) -> None:
    """Model hyperparameters as `ImageClassifier` saves them: its own fields, plain values, and the strategy
    as a registered name with that strategy's own plain options."""
    if not isinstance(hparams, dict):
        raise _crafted(where, f"its hyperparameters are a {type(hparams).__name__}, not a mapping")
    known = HPARAMS | LEGACY if is_flat(hparams) else HPARAMS
    unknown = sorted(str(k) for k in hparams if k not in known)
    if unknown:
        raise _crafted(where, f"its hyperparameters hold {unknown[0]!r}, which is no model option")
    for key, value in hparams.items():
        if key in GROUPS and not is_flat(hparams):
            _check_group(key, value, where)
        elif key != "strategy" and not plain(value):
            raise _crafted(where, f"its hyperparameter {key!r} is a {type(value).__name__}, not a plain value")
    flat = flat_hparams(hparams)
    for key, kind in (("backbone", str), ("num_classes", int), ("input_size", int)):
        if key in flat and (type(flat[key]) is not kind):
            raise _crafted(where, f"its hyperparameter {key!r} is a {type(flat[key]).__name__}, "
                           f"not a {kind.__name__}")
    spec = hparams.get("strategy")
    if spec is None:
        return
    name = spec.get("name") if isinstance(spec, dict) else None
    if not isinstance(name, str) or name not in STRATEGIES:
        raise _crafted(where, f"its strategy is {name if isinstance(name, str) else spec!r:.60}, not one of "
                       f"{', '.join(STRATEGIES)}")
    options = keyword_arguments(STRATEGIES[name]) or set()
    for key, value in spec.items():
        if key not in options or not plain(value):
            raise _crafted(where, f"its strategy option {key!r} is not a plain option of strategy {name!r}")


def _check_group(name: str, value: Any, where: str) -> None:
    """An option group (`models/options.py`): a mapping of that group's own fields to plain values."""
    options = {f.name for f in fields(GROUPS[name])}
    if not isinstance(value, dict):
        raise _crafted(where, f"its {name} options are a {type(value).__name__}, not a mapping")
    if unknown := sorted(str(k) for k in value if k not in options):
        raise _crafted(where, f"its {name} options hold {unknown[0]!r}, which is no {name} option")
    if bad := [k for k, v in value.items() if not plain(v)]:
        raise _crafted(where, f"its {name} option {bad[0]!r} is a {type(value[bad[0]]).__name__}, not a plain value")


def check_base_record(record: Any, where: str) -> None:
    """A small checkpoint's `base_weights` record: a count, a SHA-256 and the weights' name."""
    ok = (isinstance(record, dict) and set(record) == {"count", "sha256", "pretrained"}
          and type(record["count"]) is int and record["count"] >= 0 and isinstance(record["sha256"], str)
          and len(record["sha256"]) == 64 and isinstance(record["pretrained"], str))
    if not ok:
        raise _crafted(where, "its base-weights record is not a count, a SHA-256 and a name")


def check_tracker_ids(record: Any, where: str) -> None:
    """A checkpoint's tracker ids: tracker names to short strings, nothing else."""
    if not (isinstance(record, dict) and all(isinstance(k, str) and isinstance(v, str) and len(v) < 200
                                             for k, v in record.items())):
        raise _crafted(where, "its tracker ids are not names and ids")


def check_preprocessing(record: Any, where: str) -> None:
    if not isinstance(record, dict) or not all(isinstance(k, str) and plain(v) for k, v in record.items()):
        raise _crafted(where, "its preprocessing record is not a mapping of plain values")
    crop = record.get("eval_crop_pct", 1.0)
    if not isinstance(crop, numbers.Real) or not 0 < crop <= 1:
        raise _crafted(where, f"its preprocessing eval_crop_pct={crop!r} is not a number in (0, 1]")


def check_checkpoint(ckpt: Any, where: str) -> None:
    """ConfigError (one line) unless `ckpt` (loaded without code) is plain data of the shape we write."""
    if not isinstance(ckpt, dict):
        raise _crafted(where, f"it holds a {type(ckpt).__name__}, not a checkpoint mapping")
    legacy = frozenset({f"{DATA_KEY}.config._target_"}) if _registered(ckpt) else frozenset()
    if (found := find_directive(ckpt, legacy)) is not None:
        raise _crafted(where, f"it holds an instantiation directive at {found}")
    check_hparams(ckpt.get("hyper_parameters", {}), where)
    if DATA_KEY in ckpt:
        check_provenance(ckpt[DATA_KEY], where)
    if BASE_KEY in ckpt:
        check_base_record(ckpt[BASE_KEY], where)
    if PREPROCESSING_KEY in ckpt:
        check_preprocessing(ckpt[PREPROCESSING_KEY], where)
    if TRACKERS_KEY in ckpt:
        check_tracker_ids(ckpt[TRACKERS_KEY], where)
    for key in ("state_dict", "current_model_state"):
        state = ckpt.get(key, {})
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise _crafted(where, f"its {key} holds something other than tensors")
    for key in ("epoch", "global_step"):
        if key in ckpt and type(ckpt[key]) is not int:
            raise _crafted(where, f"its {key} is a {type(ckpt[key]).__name__}, not an integer")
