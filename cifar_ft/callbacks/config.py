"""The callbacks node's schemas (`callbacks.<name>`): each of our callbacks' options, their types,
defaults, valid values and help. Lightning's own callbacks (checkpoints, LR monitor) are configured
with Lightning's arguments, checked against their signatures. Light: no torch, no Lightning."""
from __future__ import annotations

import re
from dataclasses import dataclass

from cifar_ft.schema import knob, schema

UNFREEZE = ("all", "gradual")
# callbacks a run has only when chosen: callbacks=[default,<name>] (measured not to pay in every run)
OPT_IN = ("ema", "precise_bn", "probe_head", "progressive_resize")
# built first, in this order, whatever order the config lists them in: the EMA's averaged weights are what
# precise BN recomputes statistics for; the probe head reads features in the modes the freeze schedule sets
FIRST = ("freeze", "ema", "precise_bn", "probe_head")


def callback_order(names: list[str]) -> list[str]:
    """`names` with those of FIRST first, in FIRST's order, then the others in their own order."""
    return [n for n in FIRST if n in names] + [n for n in names if n not in FIRST]


def _regexes(v: object) -> bool:
    try:
        return all(re.compile(str(p)) is not None for p in v)  # type: ignore[union-attr]
    except re.error:
        return False


@schema("callbacks", "freeze")
@dataclass
class FreezeOptions:
    """How the freeze schedule unfreezes (`freeze.FreezeSchedule`); how long the backbone stays frozen and
    what its BatchNorm statistics do are the strategy's (`strategy.frozen_epochs`, `strategy.bn_statistics`)."""

    _target_: str = "cifar_ft.callbacks.freeze.FreezeSchedule"
    unfreeze: str = knob("all", "all | gradual (groups_per_epoch layer groups per epoch, deepest first)",
                         choices=UNFREEZE)
    groups_per_epoch: int = knob(1, "gradual: layer groups unfrozen per epoch", ge=1)
    groups: list[str] | None = knob(None, "regexes defining layer groups (default: timm's group_matcher)",
                                    check=_regexes, valid="null or a list of valid regexes")
    augment_frozen: bool = knob(False, "false: frozen epochs see un-augmented images (linear-probe practice), "
                                       "so backbone features are computed once")
    feature_cache: bool = knob(True, "frozen, un-augmented epochs: the head trains on cached backbone features")
    feature_cache_max_gb: float = knob(4.0, "above this (train + val features, float32) the cache is skipped",
                                       ge=0.0)


@schema("callbacks", "checkpoints")
@dataclass
class CheckpointsOptions:
    """checkpoints/best-epochNNN.ckpt (by optimized_metric) and checkpoints/last.ckpt (`checkpoints.checkpoints`)."""

    _target_: str = "cifar_ft.callbacks.checkpoints.checkpoints"
    save_top_k: int = knob(1, "best checkpoints kept (-1: every epoch's)", ge=-1)
    every_n_train_steps: int | None = knob(None, "last.ckpt every N optimizer steps too (mid-epoch; resumes exactly); "
                                                 "null: after every epoch", ge=1)


@schema("callbacks", "ema")
@dataclass
class EMAOptions:
    """An exponential moving average of the weights, used for validation, test and checkpoints (`ema.EMA`)."""

    _target_: str = "cifar_ft.callbacks.ema.ema_callback"
    decay: float = knob(0.999, "the average's decay per update", gt=0.0, lt=1.0)
    warmup: bool = knob(True, "decay ramps up as (1+t)/(10+t) (timm), so short runs are not held at the start")
    update_every_n_steps: int = knob(1, "optimizer steps between updates", ge=1)
    update_starting_at_step: int | None = knob(None, "first optimizer step that updates the average", ge=0)


@schema("callbacks", "precise_bn")
@dataclass
class PreciseBNOptions:
    """Before each validation: BatchNorm statistics recomputed over N training images (`precise_bn`)."""

    _target_: str = "cifar_ft.callbacks.precise_bn.precise_bn"
    images: int = knob(4096, "training images the statistics are computed over", ge=1)
    seed: int = knob("${seed}", "which training images", ge=0)


@schema("callbacks", "probe_head")
@dataclass
class ProbeHeadOptions:
    """Before the first step: the new head fitted by logistic regression on N images' features (LP-FT's
    probe, in seconds; `probe_head.ProbeHead`)."""

    _target_: str = "cifar_ft.callbacks.probe_head.probe_head"
    images: int = knob(2048, "training images whose features the head is fitted to", ge=2, le=1_000_000)
    l2: float = knob(0.1, "on |W|^2 of the standardised features", ge=0.0)
    max_iter: int = knob(100, "L-BFGS iterations", ge=1)
    seed: int = knob("${seed}", "which training images", ge=0)


@schema("callbacks", "progressive_resize")
@dataclass
class ProgressiveResizeOptions:
    """Training images ramp from start_size px to model.input_size (`progressive_resize.ProgressiveResize`)."""

    _target_: str = "cifar_ft.callbacks.progressive_resize.progressive_resize"
    start_size: int = knob(64, "the first training images' side, px", ge=16)
    start_fraction: float = knob(0.0, "ramp from this fraction of the run's optimizer steps ...", ge=0.0, lt=1.0)
    end_fraction: float = knob(0.75, "... to this one, then train at model.input_size", gt=0.0, le=1.0)
    step: int = knob(16, "sizes in multiples of this (px)", ge=1)


@schema("callbacks", "nonfinite_loss")
@dataclass
class NonFiniteOptions:
    """A NaN/inf loss stops the run with the step and LRs, before a bad checkpoint is written."""

    _target_: str = "cifar_ft.callbacks.nonfinite_loss.StopOnNonFiniteLoss"
    check_every_n_steps: int | None = knob(None, "null: on logging steps (+ every epoch end and checkpoint)", ge=1)


@schema("callbacks", "stop_on_signal")
@dataclass
class StopOnSignalOptions:
    """SIGTERM/SIGINT: finish the step, write checkpoints/last.ckpt, exit (`stop_on_signal.StopOnSignal`)."""

    _target_: str = "cifar_ft.callbacks.stop_on_signal.StopOnSignal"
    max_delay_s: float = knob(5.0, "DDP: ranks agree on a stop about this often (one tiny all-reduce)", gt=0.0)
    agree_every_n_steps: int | None = knob(None, "DDP: agree every N steps instead (a stop at a known step)", ge=1)


@schema("callbacks", "progress_bar")
@dataclass
class ProgressBarOptions:
    """A terminal: a bar refreshed on logging steps (trainer.log_every_n_steps); a file (a cluster job): a
    line every every_s seconds."""

    _target_: str = "cifar_ft.callbacks.progress.progress_bar"
    every_s: float = knob(30.0, "output to a file: a progress line this often", gt=0.0)
