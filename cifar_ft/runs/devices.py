"""Device values checked before anything runs: predict's `device=`, and `trainer.devices` on a machine
without the GPUs it asks for."""
from __future__ import annotations

from typing import Any

import torch

from cifar_ft.errors import ConfigError


def device_exists(value: Any) -> bool:
    """auto, or a torch device of a type we run on that exists on this machine (predict's `device=`)."""

    if value == "auto":
        return True
    try:
        device = torch.device(str(value))
    except (RuntimeError, ValueError):
        return False
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return device.type == "cpu" or (device.type == "mps" and torch.backends.mps.is_available())


def check_devices(accelerator: Any, devices: Any) -> None:
    """Several devices without a GPU would silently start that many CPU processes of the model."""

    count = len(devices) if isinstance(devices, list) else devices if isinstance(devices, int) else 1
    if accelerator in ("auto", "gpu", "cuda") and count > 1 and not torch.cuda.is_available():
        raise ConfigError(f"trainer.devices={devices} with trainer.accelerator={accelerator}: no GPU was found "
                          "here; for DDP over CPU processes say trainer.accelerator=cpu (or trainer=ddp_cpu), "
                          "else use trainer.devices=1")
