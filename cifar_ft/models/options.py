"""The options `ImageClassifier` takes, grouped by what they configure, and the one table that maps the
model node's keys (`model.input_size`, ... : `models/config.py`, what users type) onto those groups.

The same table reads checkpoints written before the grouping, whose hyperparameters are the flat keys:
`grouped_hparams` turns either form into the grouped one, `flat_hparams` into the flat one (what the model
card, eval and predict read). Light: no torch import.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from cifar_ft.errors import ConfigError
from cifar_ft.models.config import ModelOptions


def _default(key: str) -> Any:
    """The group field of the model node's key `key`: its default is the node's (models/config.py is its one
    home), and the key is kept in the field's metadata, from which `FLAT` is built."""
    spec = {f.name: f for f in fields(ModelOptions)}[key]
    if spec.default_factory is not MISSING:  # a list (mean, std): a tuple here, immutable
        return field(default=tuple(spec.default_factory()), metadata={"key": key})
    return field(default=spec.default, metadata={"key": key})


@dataclass(frozen=True)
class BackboneOptions:
    """Which pretrained network, from where, and how it runs."""

    name: str = field(metadata={"key": "backbone"})  # required: no default
    source: str = _default("source")
    pretrained: bool | str = _default("pretrained")
    drop_path_rate: float = _default("drop_path_rate")
    channels_last: bool = _default("channels_last")


@dataclass(frozen=True)
class InputOptions:
    """How the backbone wants its images; stored with checkpoints so eval rebuilds the same transforms."""

    size: int = _default("input_size")
    test_size: int | None = _default("test_input_size")
    mean: tuple[float, ...] = _default("mean")
    std: tuple[float, ...] = _default("std")
    batch_size: int = _default("batch_size")


@dataclass(frozen=True)
class HeadOptions:
    """The new linear head."""

    dropout: float = _default("head_dropout")
    init: str = _default("head_init")


@dataclass(frozen=True)
class TrainingOptions:
    """How the model trains: loss, learning-rate scaling of the backbone, what checkpoints hold."""

    backbone_lr_mult: float = _default("backbone_lr_mult")
    layer_decay: float | None = _default("layer_decay")
    label_smoothing: float = _default("label_smoothing")
    backprop_fraction: float = _default("backprop_fraction")
    small_checkpoints: bool = _default("small_checkpoints")


@dataclass(frozen=True)
class CompileOptions:
    """torch.compile of the training forward."""

    enabled: bool = _default("compile")
    mode: str = _default("compile_mode")
    backend: str = _default("compile_backend")


GROUPS: dict[str, type] = {"backbone": BackboneOptions, "inputs": InputOptions, "head": HeadOptions,
                           "training": TrainingOptions, "compiler": CompileOptions}

# model node key (and the hyperparameter of a checkpoint written before the grouping) -> (group, field)
FLAT: dict[str, tuple[str, str]] = {f.metadata["key"]: (group, f.name) for group, kind in GROUPS.items()
                                    for f in fields(kind)}


@dataclass(frozen=True)
class ModelGroups:
    """The grouped options of one model."""

    backbone: BackboneOptions
    inputs: InputOptions = field(default_factory=InputOptions)
    head: HeadOptions = field(default_factory=HeadOptions)
    training: TrainingOptions = field(default_factory=TrainingOptions)
    compiler: CompileOptions = field(default_factory=CompileOptions)

    def as_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in GROUPS}


def group_options(flat: dict[str, Any]) -> ModelGroups:
    """The model node's keys (flat) -> grouped options. ConfigError on a key the table lacks."""
    parts: dict[str, dict[str, Any]] = {name: {} for name in GROUPS}
    for key, value in flat.items():
        if key not in FLAT:
            raise ConfigError(f"model.{key} is not a model option (valid: {', '.join(FLAT)})")
        group, name = FLAT[key]
        parts[group][name] = value
    if "name" not in parts["backbone"]:
        raise ConfigError("model.backbone is not set (a timm or torchvision model name)")
    return ModelGroups(**{name: as_group(name, parts[name]) for name in GROUPS})


def as_group(name: str, value: Any) -> Any:
    """`value` (the group's options, or its plain dict as a checkpoint stores it) as the group's dataclass."""
    kind = GROUPS[name]
    if isinstance(value, kind):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"model option group {name!r} is a {type(value).__name__}, not {kind.__name__}")
    unknown = sorted(set(value) - {f.name for f in fields(kind)})
    if unknown:
        raise ConfigError(f"{unknown[0]!r} is not an option of the model's {name} group")
    return kind(**{k: tuple(float(x) for x in v) if k in ("mean", "std") else v for k, v in value.items()})


def plain_group(options: Any) -> dict[str, Any]:
    """A group's dataclass as plain values (lists, not tuples): what checkpoints store."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()}


def is_flat(hparams: dict[str, Any]) -> bool:
    """Hyperparameters of a checkpoint written before the grouping (`backbone` was the name)."""
    return isinstance(hparams.get("backbone"), str)


def grouped_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's hyperparameters in the grouped form, whichever form it stores."""
    if not is_flat(hparams):
        return dict(hparams)
    flat = {k: v for k, v in hparams.items() if k in FLAT}
    groups = {name: plain_group(g) for name, g in group_options(flat).as_kwargs().items()}
    return {**{k: v for k, v in hparams.items() if k not in FLAT}, **groups}


def flat_hparams(hparams: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's (or a model's) hyperparameters with the model node's flat keys, whichever form it
    stores: `input_size`, `mean`, `backbone` (the name), ... beside `num_classes`, `class_names`, `tta`."""
    if is_flat(hparams):
        return dict(hparams)
    out = {k: v for k, v in hparams.items() if k not in GROUPS}
    for key, (group, name) in FLAT.items():
        values = hparams.get(group)
        if isinstance(values, dict) and name in values:
            out[key] = values[name]
    return out
