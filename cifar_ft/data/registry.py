"""The data modules by name (`DATA_MODULES`), and building one from plain, checked values.

A run's data is recorded in its checkpoints (`runs/provenance.py`) so that eval can rebuild it. What
a file says is never code: a stored data config names its module by a key of `DATA_MODULES` (`module:
image_folder`), its other fields must be options that module takes, and every value must be plain
(a string, number, boolean, null, or a list of those). `build_data` then calls the registered class
itself; nothing read from a file reaches `hydra.utils.instantiate` or an import.

Add a data module: the class, an entry here, and `conf/data/<name>.yaml` (`_target_` + its options).
"""
from __future__ import annotations

from typing import Any

from cifar_ft.data.augment_options import AugmentOptions
from cifar_ft.data.cifar import CIFARDataModule
from cifar_ft.data.datamodule import ImageDataModule
from cifar_ft.data.image_folder import ImageFolderDataModule
from cifar_ft.data.synthetic import SyntheticDataModule
from cifar_ft.errors import ConfigError, close_matches
from cifar_ft.plain import DIRECTIVES, keyword_arguments, plain

# registry name -> data module class (a stored data config names one of these keys)
DATA_MODULES: dict[str, type[ImageDataModule]] = {
    "cifar": CIFARDataModule,
    "image_folder": ImageFolderDataModule,
    "synthetic": SyntheticDataModule,
}
# the `_target_` paths of conf/data/*.yaml, which checkpoints written before `module` existed stored
TARGETS: dict[str, str] = {f"{cls.__module__}.{cls.__qualname__}": name for name, cls in DATA_MODULES.items()}


def module_name(target: object) -> str | None:
    """The registry name of a `_target_` path (or of a name), None for a module outside the registry."""
    if isinstance(target, str) and target in DATA_MODULES:
        return target
    return TARGETS.get(target) if isinstance(target, str) else None


def options_of(cls: type) -> set[str]:
    """The options a data module takes: its keyword arguments and the augmentation options."""
    return (keyword_arguments(cls) or set()) | set(AugmentOptions.field_names())


def check_record(config: Any, where: str) -> tuple[str, dict[str, Any]]:
    """(registry name, options) of a stored data config; ConfigError (one line, naming `where` and the
    field) for anything but a registered module with its own options as plain values."""
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: the stored data config is a {type(config).__name__}, not a mapping; "
                          "give the data with data=... [data.root=...]")
    config = dict(config)
    for key in config:
        if not isinstance(key, str) or (key in DIRECTIVES and key != "_target_"):
            raise ConfigError(f"{where}: the stored data config holds {key!r}, which no data config has; refused "
                              "(a crafted file?)")
    if "module" in config and "_target_" in config:
        raise ConfigError(f"{where}: the stored data config names its module twice; refused (a crafted file?)")
    name = module_name(config.pop("module", None) if "module" in config else config.pop("_target_", None))
    if name is None:
        raise ConfigError(f"{where}: the stored data config names no data module of cifar_ft "
                          f"(valid: {', '.join(DATA_MODULES)}); give the data with data=... [data.root=...]")
    valid = options_of(DATA_MODULES[name])
    for key, value in config.items():
        if key not in valid:
            raise ConfigError(f"{where}: the stored data config has an unknown {name} option {key!r}; refused "
                              f"(valid: {', '.join(sorted(valid))}).{close_matches(key, valid)}")
        if not plain(value):
            raise ConfigError(f"{where}: the stored data option {key!r} is a {type(value).__name__}, not a plain "
                              "value (string, number, boolean, null or list); refused (a crafted file?)")
    return name, config


def build_data(name: str, options: dict[str, Any]) -> ImageDataModule:
    """The registered data module `name` with `options` (from `check_record`, or the user's config)."""
    return DATA_MODULES[name](**options)
