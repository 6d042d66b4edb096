"""Frozen layer groups computed in bf16 during training steps (`strategy.frozen_precision`).

Why our own wrapper and not the trainer's precision: `trainer.precision=bf16-mixed` puts the whole step
under autocast, and on a CPU the backward of EfficientNet's depthwise convolutions is about 2x slower
in bf16 (README, "Time-to-accuracy levers"). The frozen groups of `strategy=partial` have no backward:
their forward alone in bf16 is 2.2-3.1x faster on a CPU with bf16 units (AMD Zen 4, AVX512-BF16: Lite0's
stem and first three blocks at 112 px, batch 64, 92-99 ms in fp32 against 30-44 ms), a training step
1.19-1.21x in a scratch loop and 1.15-1.18x in `experiment=cpu_transfer` (README, "Frozen blocks in
bf16"). Their output is cast back to float32, so the groups that train, their gradients and the
optimizer run in fp32 on the frozen features as bf16 rounds them (relative error 0.8 % with random
weights and inputs, 4.7 % with Lite0's real weights on CIFAR images: about as far as the same-size
Gaussian noise moves the trained blocks' output).

Only training steps use it: the wrapped forwards use bf16 only while the backbone is in training mode with gradients
enabled, so validation, test, eval, predict, export and the feature passes of callbacks (under
`torch.no_grad`) compute the frozen groups in float32, as the weights are stored.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifar_ft.errors import ConfigError

FROZEN_PRECISIONS = ("fp32", "bf16", "auto")


def cpu_bf16_units() -> list[str]:
    """The CPU's bf16 instruction flags (AVX512-BF16, AMX-BF16) from /proc/cpuinfo; [] when none (or
    not Linux): bf16 on a CPU without them is emulated and slower, so it is used only where they are
    found, never assumed."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def bf16_native(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CPU with bf16 units, or a CUDA GPU that supports it."""
    if device.type == "cpu":
        return bool(cpu_bf16_units())
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def frozen_precision(value: Any) -> str:
    """`strategy.frozen_precision` checked: fp32, bf16 or auto (bf16 where the device has bf16 units)."""
    if value not in FROZEN_PRECISIONS:
        raise ConfigError(f"strategy.frozen_precision={value!r} is not one of {', '.join(FROZEN_PRECISIONS)} "
                          "(auto: bf16 for the frozen groups' forward where the device computes bf16 in hardware)")
    return value


def outermost(backbone: nn.Module, names: set[str]) -> list[nn.Module]:
    """The largest submodules of `backbone` whose parameters are all in `names` (and that have some)."""
    found: list[tuple[str, nn.Module]] = []
    for path, module in backbone.named_modules():
        own = [f"{path}.{n}" if path else n for n, _ in module.named_parameters()]
        if not path or not own or not set(own) <= names:
            continue
        if not any(path.startswith(f"{p}.") for p, _ in found):
            found.append((path, module))
    return [m for _, m in found]


class Bf16Forward:
    """Runs each attached module's forward under bf16 autocast and hands float32 on, while `root` trains
    with gradients enabled and no autocast is already active (a bf16-mixed trainer needs none).

    The module's own `forward` is wrapped (an instance attribute; parameter names and the state dict are
    unchanged) so that one `with torch.autocast` covers the call: hooks that enter autocast before the
    forward and leave it after cannot be traced by torch.compile, and a `with` also closes the region
    when the forward raises. A CPU's bf16 units are read once, here; a GPU's on its first forward (asking
    earlier would start CUDA before DDP's processes exist)."""

    def __init__(self, root: nn.Module, mode: str) -> None:
        self.root, self.mode = root, mode
        self._native: dict[str, bool] = {"cpu": bool(cpu_bf16_units())} if mode == "auto" else {}

    def attach(self, modules: list[nn.Module]) -> None:
        for module in modules:
            module.forward = functools.partial(self.run, module.forward)

    def _wanted(self, x: Any) -> bool:
        if not (isinstance(x, torch.Tensor) and x.dtype == torch.float32):
            return False
        if not (self.root.training and torch.is_grad_enabled()) or torch.is_autocast_enabled(x.device.type):
            return False
        if self.mode == "auto" and x.device.type not in self._native:
            self._native[x.device.type] = bf16_native(x.device)
        return self.mode == "bf16" or self._native[x.device.type]

    def run(self, forward: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if not (args and self._wanted(args[0])):
            return forward(*args, **kwargs)
        with torch.autocast(args[0].device.type, dtype=torch.bfloat16):
            output = forward(*args, **kwargs)
        return output.float() if isinstance(output, torch.Tensor) else output
