"""The written contracts between parts that must not import each other (a leaf: imports nothing of ours).

`callbacks`, `data` and `models` are independent layers: a callback never imports the datamodule or
the LightningModule class it works with. What it relies on is stated here, as Protocols that the
concrete classes satisfy structurally (`ImageDataModule`, `ImageClassifier`); tests check that they do.

One contract spans every layer: **files are data**. No value read from a file (a checkpoint, a weights
file, a run's or sweep's YAML and JSON, a study's storage) reaches `instantiate`, an import, `getattr`
on a module, `eval` or an unpickling loader. Files load without code (`weights_only=True`,
`yaml.safe_load`, `json`); what is rebuilt from them is looked up in a registry by a checked name with
checked plain options (`cifar_ft.plain`, `runs/stored.py`, `data/registry.py`). The sites where a value
could choose code are listed, with why theirs cannot come from a file, in `tests/test_architecture.py`
(`CODE_CHOOSING`); `tests/e2e/test_hostile_files.py` plants directives in every file a command reads.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn
from torch.utils.data import DataLoader

# What the LightningModule logs per validation epoch, and so what `optimized_metric` (best checkpoint, early
# stopping, sweeps) can name (acc_top5 only with more than 5 classes): models/metrics.py logs them.
MONITORABLE = tuple(f"val/{m}" for m in ("acc", "loss", "f1_macro", "precision_macro", "recall_macro", "acc_top5"))


@runtime_checkable
class FrozenPhaseData(Protocol):
    """What the freeze schedule, the feature cache and the run plumbing need from a datamodule.

    When the hooks are called:
    - `set_augment(False)` at the start of a frozen epoch (FreezeSchedule, `augment_frozen=false`):
      training batches then get the deterministic eval transform; `set_augment(True)` once unfrozen.
    - `cache_features(split, feats)` after the feature cache computed `feats` (N, F) for every
      image of `split` in index order (at the start of the first frozen epoch); from then on,
      batches of that split are `(feats[index], labels)` instead of images.
    - `clear_features()` when the backbone unfreezes: batches are images again.
    - `preprocessing()` when a checkpoint is saved: how new images must be prepared to look like
      this data (stored side in px, eval crop), for `cifar_ft.predict`.
    """

    def set_augment(self, enabled: bool) -> None: ...

    def augmenting(self) -> bool: ...

    def cache_features(self, split: str, features: torch.Tensor) -> None: ...

    def clear_features(self) -> None: ...

    def cached_splits(self) -> list[str]: ...

    def split_size(self, split: str) -> int:
        """Images in `split` (0 if the split is absent)."""

    def ordered_loader(self, split: str) -> DataLoader:
        """Every image of `split` once, in index order, un-augmented: batches (uint8 images, labels, index)."""

    def eval_transform(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 images (B, 3, h, w) on the model's device -> normalised model input."""

    def preprocessing(self) -> dict: ...


@runtime_checkable
class ResizableTrainData(Protocol):
    """What progressive resizing (`callbacks.progressive_resize`) needs from a datamodule.

    - `input_size`: the model's training input size (px), where the schedule ends.
    - `set_train_size(px)` at the start of training and after each training batch
      (`on_train_start`, `on_train_batch_end`): training batches transferred from then on are resized
      to `px`; `None` at the end of training: back to `input_size`. Validation and test sizes never
      change.
    """

    input_size: int

    def set_train_size(self, px: int | None) -> None: ...


@runtime_checkable
class StatisticsData(Protocol):
    """What precise BatchNorm statistics (`callbacks.precise_bn`, at the start of each validation during
    fit) and the probe head (`callbacks.probe_head`, at the start of training) need from a datamodule:

    - `sample_loader(split, count, seed)`: `count` images of `split` (all of them if fewer) drawn at
      random without replacement, a function of `seed` alone, un-augmented, in batches
      (uint8 images, labels, index); it must not draw from the global RNG.
    - `eval_transform()`: uint8 images on the model's device -> normalised model input at the size the
      model is validated and tested at.
    """

    def sample_loader(self, split: str, count: int, seed: int) -> DataLoader: ...

    def eval_transform(self) -> Callable[[torch.Tensor], torch.Tensor]: ...


@runtime_checkable
class FinetunableModule(Protocol):
    """What the freeze schedule, the feature cache and the throughput meter need from the module.

    - `backbone`: the pretrained part, whose parameters the freeze schedule freezes and unfreezes;
      `head`: the fresh classifier on top (always trained).
    - `features(x)`: backbone features (B, F) of a normalised image batch, in the module's memory
      format (what the feature cache stores).
    - `trainable_backbone()`: the backbone parameter names the fine-tuning strategy trains (all of
      them for full fine-tuning, the adapters for LoRA); the freeze schedule unfreezes only these.
    - `bn_statistics_frozen()`: True when BatchNorm running statistics must never update, even in a
      layer whose parameters train (the strategy's choice: bitfit, LoRA); else they update where
      the layer trains.
    - `add_backbone_groups(optimizer, names, tag, step)`: add those backbone parameters to the
      optimizer as param groups named `tag` (and `tag/no_decay`), each at its own peak LR (the base
      LR x its `lr_scale`), warming up from optimizer step `step`; the freeze schedule calls it when
      it unfreezes a layer group, then refreshes the LR schedulers.
    - `input_size`: side in px of the images the backbone takes (for FLOP counts).
    """

    backbone: nn.Module
    head: nn.Module

    @property
    def device(self) -> torch.device: ...

    @property
    def input_size(self) -> int: ...

    def features(self, x: torch.Tensor) -> torch.Tensor: ...

    def trainable_backbone(self) -> list[str]: ...

    def bn_statistics_frozen(self) -> bool: ...

    def add_backbone_groups(self, optimizer: torch.optim.Optimizer, names: list[str], tag: str,
                            step: int) -> None: ...


@runtime_checkable
class RunFacts(Protocol):
    """A callback with `run_facts()` adds its entries (name -> number) to a training run's
    metrics.json, read once after fit (e.g. images/s and MFU from the throughput meter)."""

    def run_facts(self) -> dict[str, float]: ...


@runtime_checkable
class CalibratableModule(Protocol):
    """What temperature scaling (callbacks/temperature.py) needs from the module, at the start of the
    final test, once the tested weights are loaded: `tta_log_probs(x)`, the log class probabilities
    (B, C) of a normalised image batch under the module's own test-time augmentation, before any
    temperature; `set_temperature(T)`, the temperature the test and everything after it apply."""

    @property
    def device(self) -> torch.device: ...

    def tta_log_probs(self, x: torch.Tensor) -> torch.Tensor: ...

    def set_temperature(self, value: float) -> None: ...


@dataclass(frozen=True)
class JobPlan:
    """What a sweep tells one of its jobs before the run starts (`cifar_ft.sweeps.jobs.plan_job`; a run
    outside a multirun gets `JobPlan()`): `skip` it and report `result` (it finished in an earlier attempt),
    `resume` it from its own checkpoints/last.ckpt (an attempt was interrupted), and the `callbacks` a trial
    of a pruned search adds; each has `pruned_at`, the epoch after which the search's pruner stopped the
    run, or None; `sweep_dir` and `job`, the sweep's directory and this job's number (trackers make one
    parent run per sweep). The run reads nothing else of the sweep."""

    skip: bool = False
    result: float | None = None
    resume: bool = False
    callbacks: tuple[Any, ...] = ()
    sweep_dir: str | None = None
    job: int | None = None
