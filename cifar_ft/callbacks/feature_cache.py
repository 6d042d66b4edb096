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
    with trainer.precision_plugin.forward_context():
        for batch_idx, (images, _, index) in enumerate(loader):
            stop_if_signalled(trainer, f"the feature cache ({split})", batch_idx)  # SIGTERM: stop in seconds
            feats = module.features(transform(images.to(module.device, non_blocking=True)))
            if out is None:
                out = torch.empty(dm.split_size(split), feats.shape[1], dtype=feats.dtype, device=feats.device)
            out[index.to(feats.device)] = feats
    module.backbone.train(was_training)
    return out


def cache_bytes(dm: FrozenPhaseData, module: FinetunableModule) -> int:
    """Upper bound on the cache's size: float32 features for train + val."""
    return sum(dm.split_size(s) for s in SPLITS) * module.backbone.num_features * 4


def fill(trainer: L.Trainer, dm: FrozenPhaseData, module: FinetunableModule) -> None:
    """Compute the train and val caches (once) and hand them to the datamodule."""
    start = time.perf_counter()
    todo = [s for s in SPLITS if s not in dm.cached_splits() and dm.split_size(s) > 0]
    if todo:
        take_over_signals(trainer)  # a SIGTERM during the cache stops the run within a batch
    for split in todo:
        dm.cache_features(split, compute_features(trainer, dm, module, split))
    if todo:
        log.info("[freeze] cached backbone features for %s in %.1f s", dm.cached_splits(), time.perf_counter() - start)
