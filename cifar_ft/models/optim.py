"""Parameter groups and LR schedules that stay correct when groups join the optimizer mid-run.

Every param group carries `lr_scale` (its peak LR as a multiple of the optimizer's base LR, timm's
convention: 1 for the head, `backbone_lr_mult` for the backbone), `initial_lr` (= base LR x
lr_scale, its peak) and `start_step` (the optimizer step it joined at). Schedules compute
`lr = initial_lr * factor`, with a linear warmup counted from the group's own `start_step`: a
backbone group unfrozen at epoch 5 warms up again, then follows the same cosine as everything else.
These keys live in the optimizer state, so resume restores them.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler, ReduceLROnPlateau

from cifar_ft.errors import check_choice


def no_decay(name: str, param: nn.Parameter, skip: set[str]) -> bool:
    """Norm weights, biases, and model-declared tokens/embeddings get no weight decay."""
    return param.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in skip or name in skip


def param_groups(named_params: list[tuple[str, nn.Parameter]], tag: str, lr_scale: float = 1.0,
                 skip: set[str] | None = None) -> list[dict]:
    """Two groups (decay / no decay) for one set of parameters at `lr_scale` x the base LR; empty
    groups are dropped. The decay group takes the optimizer's weight decay, the other none."""
    skip = skip or set()
    decay = [p for n, p in named_params if not no_decay(n, p, skip)]
    plain = [p for n, p in named_params if no_decay(n, p, skip)]
    groups = [{"params": decay, "name": f"{tag}"},
              {"params": plain, "weight_decay": 0.0, "name": f"{tag}/no_decay"}]
    return [dict(g, lr_scale=float(lr_scale)) for g in groups if g["params"]]


def build_optimizer(factory: Callable[..., Optimizer], groups: list[dict]) -> Optimizer:
    """`factory(groups)` (a partial of torch.optim.X with the configured lr, weight decay, ...), then
    every group at its peak, base LR x lr_scale. The fused kernel (CUDA and CPU alike) when the
    optimizer has one and the config did not choose: one kernel per step, and no per-parameter
    `.item()` of step counters, which the unfused CPU path does for every parameter."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    fused = inspect.signature(factory).parameters.get("fused")
    kwargs = {}
    if fused is not None and fused.default is None:
        devices = {p.device.type for g in groups for p in g["params"]}
        kwargs["fused"] = bool(devices) and devices <= set(_get_fused_kernels_supported_devices())
    optimizer = factory(groups, **kwargs)
    tag_new_groups(optimizer, 0)
    return optimizer


def join_param_groups(optimizer: Optimizer, groups: list[dict], step: int) -> None:
    """Add groups mid-run (unfreezing): each at base LR x lr_scale as its peak, warming up from `step`."""
    for group in groups:
        optimizer.add_param_group(group)
    tag_new_groups(optimizer, step)


def tag_new_groups(optimizer: Optimizer, step: int) -> None:
    """Record peak LR and join step for groups that do not have them yet. The peak is the group's
    `lr` (the optimizer's base LR, unless the group was given its own) x its `lr_scale`."""
    for group in optimizer.param_groups:
        if "initial_lr" not in group:
            group["initial_lr"] = group["lr"] = group["lr"] * group.get("lr_scale", 1.0)
        group.setdefault("start_step", step)


def _cosine(progress: float, floor: float) -> float:
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _linear(progress: float, floor: float) -> float:
    """Straight down to the floor: the schedule "Budgeted Training" (Li, Yumer and Ramanan, ICLR 2020)
    finds best when the run is cut to a fixed compute budget."""
    return floor + (1 - floor) * (1 - progress)


# scheduler.decay -> multiplier(progress in [0, 1], floor as a fraction of the peak)
DECAYS: dict[str, Callable[[float, float], float]] = {
    "cosine": _cosine,
    "linear": _linear,
    "constant": lambda progress, floor: 1.0,
}


class WarmupSchedule(LRScheduler):
    """Per-step schedule: linear warmup per group, then cosine or linear decay (or constant) over the run.

    `total_steps` is the whole run in optimizer steps; `min_lr_ratio` is the decay's floor as a
    fraction of each group's peak LR.
    """

    def __init__(self, optimizer: Optimizer, total_steps: int, warmup_steps: int = 0,
                 decay: str = "cosine", min_lr_ratio: float = 0.0, last_epoch: int = -1) -> None:
        check_choice("scheduler.decay", decay, DECAYS)
        self.total_steps, self.warmup_steps = max(1, int(total_steps)), int(warmup_steps)
        self.decay, self.min_lr_ratio = decay, float(min_lr_ratio)
        tag_new_groups(optimizer, 0)
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int, start_step: int) -> float:
        """LR multiplier at optimizer step `step` for a group that joined at `start_step`."""
        warm = 1.0
        if self.warmup_steps > 0:
            warm = min(1.0, (step - start_step + 1) / self.warmup_steps)
        progress = min(1.0, step / self.total_steps)
        return warm * DECAYS[self.decay](progress, self.min_lr_ratio)

    def get_lr(self) -> list[float]:
        step = max(0, self.last_epoch)
        tag_new_groups(self.optimizer, step)
        return [g["initial_lr"] * self.factor(step, g["start_step"]) for g in self.optimizer.param_groups]

    def refresh(self) -> None:
        """Set every group's LR for the current step (call after adding groups)."""
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def step(self, epoch=None) -> None:  # noqa: D102 - base class caches one LR per group at init
        self.base_lrs = [g.get("initial_lr", g["lr"]) for g in self.optimizer.param_groups]
        super().step(epoch)


class PlateauSchedule(ReduceLROnPlateau):
    """ReduceLROnPlateau that also scales groups added later by the reductions made so far."""

    def __init__(self, optimizer: Optimizer, mode: str = "max", factor: float = 0.1,
                 patience: int = 3, min_lr: float = 0.0, **kwargs) -> None:
        tag_new_groups(optimizer, 0)
        self.scale = 1.0
        super().__init__(optimizer, mode=mode, factor=factor, patience=patience, min_lr=min_lr, **kwargs)
        self._min_lr = float(min_lr)

    def step(self, metrics, epoch=None) -> None:  # noqa: D102
        self._sync_groups()
        before = [g["lr"] for g in self.optimizer.param_groups]
        super().step(metrics, epoch)
        if any(g["lr"] < b for g, b in zip(self.optimizer.param_groups, before)):
            self.scale *= self.factor

    def refresh(self) -> None:
        self._sync_groups()

    def _sync_groups(self) -> None:
        tag_new_groups(self.optimizer, 0)
        while len(self.min_lrs) < len(self.optimizer.param_groups):
            group = self.optimizer.param_groups[len(self.min_lrs)]
            group["lr"] = max(group["initial_lr"] * self.scale, self._min_lr)
            self.min_lrs.append(self._min_lr)
        if hasattr(self, "default_min_lr"):  # torch >= 2.6 keeps this alongside min_lrs
            self.default_min_lr = self._min_lr


def constant_schedule(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0) -> WarmupSchedule:
    """Warmup then a constant LR."""
    return WarmupSchedule(optimizer, total_steps, warmup_steps, decay="constant")
