"""Rules that span config nodes, checked with the rest of the config before anything is built or written:
a schedule that leaves its strategy nothing to train, settings that contradict each other, lists with a
value twice, and `trainer.devices`. `validate.validate_config` calls `check_limits(get)`, where `get(key)`
is the resolved value or `MISSING`."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cifar_ft.errors import ConfigError

# list options where a value given twice would be run twice and weigh twice in a mean
UNIQUE_LISTS = ("robustness.corruptions", "robustness.severities", "callbacks.freeze.groups", "strategy.targets",
                "hydra.sweeper.objectives")
# strategies whose schedule holds a frozen phase first: a run no longer than that phase never trains them
SCHEDULED = ("lp_ft", "gradual")


def check_limits(get: Callable[[str], Any], missing: object) -> None:
    _check_schedule(get, missing)
    _check_duplicates(get, missing)
    _check_devices(get("trainer.devices"), missing)
    _check_calibration(get)
    start, end = (get(f"callbacks.progressive_resize.{k}_fraction") for k in ("start", "end"))
    if missing not in (start, end) and all(isinstance(v, (int, float)) for v in (start, end)) \
            and not 0 <= start < end:
        raise ConfigError(f"callbacks.progressive_resize: start_fraction={start} < end_fraction={end} is required "
                          "(the size ramps between them)")


def _check_schedule(get: Callable[[str], Any], missing: object) -> None:
    freeze, epochs = get("strategy.frozen_epochs"), get("trainer.max_epochs")
    if missing in (freeze, epochs) or epochs == -1:
        return
    if freeze > epochs:
        raise ConfigError(f"strategy.frozen_epochs={freeze} > trainer.max_epochs={epochs}; use "
                          "frozen_epochs <= max_epochs (= max_epochs: strategy=linear_probe)")
    name = get("strategy.name")
    if name in SCHEDULED and freeze >= epochs:
        raise ConfigError(f"strategy={name} with trainer.max_epochs={epochs}: its frozen phase "
                          f"(strategy.frozen_epochs={freeze}) takes every epoch, so the backbone would never "
                          f"train and the run would be a linear probe reported as {name}; use "
                          f"trainer.max_epochs>={freeze + 1}, or strategy=linear_probe")


def _check_calibration(get: Callable[[str], Any]) -> None:
    """Temperature scaling fits on the validation split: none held out (and no val/ folder) is refused
    now, not after training."""
    if get("calibrate") != "temperature" or get("data.val_size") not in (0, 0.0):
        return
    root, target = get("data.root"), str(get("data._target_"))
    if target.endswith("ImageFolderDataModule") and isinstance(root, str):
        from cifar_ft.data.folder_source import FolderSource

        try:
            if "val" in FolderSource(root).splits():
                return
        except ConfigError:
            return  # a bad data.root is reported by its own check
    raise ConfigError("calibrate=temperature with data.val_size=0: the temperature is fitted on the validation "
                      "split, and none would be held out; valid: data.val_size > 0 (a count, or a fraction such "
                      "as 0.1), a val/ folder in data.root, or calibrate=none")


def _check_duplicates(get: Callable[[str], Any], missing: object) -> None:
    for key in UNIQUE_LISTS:
        values = get(key)
        if values is missing or not isinstance(values, (list, tuple)):
            continue
        seen: list = []
        for value in values:
            if value in seen:
                raise ConfigError(f"{key}={list(values)}: {value!r} is listed twice; give each value once (a "
                                  "duplicate would be run twice and weigh twice in any mean)")
            seen.append(value)


def _check_devices(devices: Any, missing: object) -> None:
    """Lightning's own error comes only after the run directory exists: `trainer.devices` checked here."""
    if devices is missing or devices == "auto":
        return
    if isinstance(devices, str) and devices.strip().lstrip("-").replace(",", "").isdigit():
        parts = [p for p in devices.split(",") if p.strip()]
        devices = int(parts[0]) if len(parts) == 1 and "," not in devices else [int(p) for p in parts]
    ok = (type(devices) is int and (devices >= 1 or devices == -1)) or (
        isinstance(devices, (list, tuple)) and len(devices) > 0 and len(set(devices)) == len(devices)
        and all(type(d) is int and d >= 0 for d in devices))
    if not ok:
        raise ConfigError(f"trainer.devices={devices!r} is not valid; valid: auto, -1 (every device), a count >= 1, "
                          "or a list of distinct device indices such as [0,1]")
