"""Frozen-phase feature cache: one backbone pass over train and val, then the head trains on features.

Valid only while the backbone is frozen (eval mode, no parameter trainable) and its input is
deterministic (no augmentation), which is when the cached features equal what a forward pass would
compute each epoch; it then gives the same head as the uncached path, up to float round-off.
Works through the `FrozenPhaseData` / `FinetunableModule` contracts (cifar_ft.contracts).
"""
from __future__ import annotations

import logging
import time

import lightning as L
import torch
from tqdm.auto import tqdm

from cifar_ft.backbones import feature_width
from cifar_ft.callbacks.progress import interactive, plain_progress
from cifar_ft.callbacks.stop_on_signal import stop_if_signalled, take_over_signals
from cifar_ft.contracts import FinetunableModule, FrozenPhaseData

log = logging.getLogger(__name__)
SPLITS = ("train", "val")


@torch.no_grad()
def compute_features(trainer: L.Trainer, dm: FrozenPhaseData, module: FinetunableModule,
                     split: str) -> torch.Tensor:
    """Backbone features (N, F) of every `split` image, in dataset index order, on the module's device."""
    loader = dm.ordered_loader(split)
    transform = dm.eval_transform()
    out: torch.Tensor | None = None
    was_training = module.backbone.training
    module.backbone.eval()
    shown = trainer.is_global_zero and trainer.progress_bar_callback is not None
    desc = f"[freeze] caching {split} features"
    if shown and not interactive():  # a log file: lines, not a bar
        bar = plain_progress(loader, desc, len(loader))
    else:
        bar = tqdm(loader, desc=desc, unit="batch", leave=False, dynamic_ncols=True, disable=None if shown else True)
    with trainer.precision_plugin.forward_context():
        for batch_idx, (images, _, index) in enumerate(bar):
            stop_if_signalled(trainer, f"the feature cache ({split})", batch_idx)  # SIGTERM: stop in seconds
            feats = module.features(transform(images.to(module.device, non_blocking=True)))
            if out is None:
                out = torch.empty(dm.split_size(split), feats.shape[1], dtype=feats.dtype, device=feats.device)
            out[index.to(feats.device)] = feats
    module.backbone.train(was_training)
    return out


def cache_bytes(dm: FrozenPhaseData, module: FinetunableModule) -> int:
    """Upper bound on the cache's size: float32 features for train + val."""
    return sum(dm.split_size(s) for s in SPLITS) * feature_width(module.backbone) * 4


def whole_epochs(trainer: L.Trainer, split: str) -> bool:
    """Whether the trainer runs every batch of `split` each epoch (`trainer.limit_{split}_batches` at
    1.0, Lightning's default). With a limit only a few batches run: a cache of the whole split would
    cost more backbone passes than it saves (`debug=limit` must stay fast on real models)."""
    limit = getattr(trainer, f"limit_{split}_batches")
    return isinstance(limit, float) and limit >= 1.0


def fill(trainer: L.Trainer, dm: FrozenPhaseData, module: FinetunableModule) -> None:
    """Compute the train and val caches (once, for the splits run whole) and hand them to the datamodule."""
    start = time.perf_counter()
    todo = [s for s in SPLITS if s not in dm.cached_splits() and dm.split_size(s) > 0]
    limited = [s for s in todo if not whole_epochs(trainer, s)]
    if limited:
        log.info("[freeze] no feature cache for %s: trainer.limit_*_batches runs part of each epoch, the backbone "
                 "runs per batch instead", limited)
        todo = [s for s in todo if s not in limited]
    if todo:
        take_over_signals(trainer)  # a SIGTERM during the cache stops the run within a batch
    for split in todo:
        dm.cache_features(split, compute_features(trainer, dm, module, split))
    if todo:
        log.info("[freeze] cached backbone features for %s in %.1f s", dm.cached_splits(), time.perf_counter() - start)
