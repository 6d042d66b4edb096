"""Frozen-phase feature cache: one backbone pass over train and val, then the head trains on features.

Valid only while the backbone is frozen (eval mode, no parameter trainable) and its input is
deterministic (no augmentation), which is when the cached features equal what a forward pass would
compute each epoch; it then gives the same head as the uncached path, up to float round-off.
"""
from __future__ import annotations

import logging
import time

import lightning as L
import torch

log = logging.getLogger(__name__)


@torch.no_grad()
def compute_features(trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> torch.Tensor:
    """Backbone features (N, F) of every `split` image, in dataset index order, on the module's device."""
    dm = trainer.datamodule
    loader = dm.ordered_loader(split)
    out: torch.Tensor | None = None
    was_training = pl_module.backbone.training
    pl_module.backbone.eval()
    with trainer.precision_plugin.forward_context():
        for images, _, index in loader:
            x = dm.batch_transform(False)(images.to(pl_module.device, non_blocking=True))
            feats = pl_module.features(x)
            if out is None:
                out = torch.empty(len(loader.dataset), feats.shape[1], dtype=feats.dtype, device=feats.device)
            out[index.to(feats.device)] = feats
    pl_module.backbone.train(was_training)
    return out


def cache_bytes(trainer: L.Trainer, pl_module: L.LightningModule) -> int:
    """Upper bound on the cache's size: float32 features for train + val."""
    dm = trainer.datamodule
    n = sum(len(dm.splits[s]) for s in ("train", "val") if dm.splits.get(s) is not None)
    return n * pl_module.backbone.num_features * 4


def fill(trainer: L.Trainer, pl_module: L.LightningModule) -> None:
    """Compute the train and val caches (once) and hand them to the datamodule."""
    dm = trainer.datamodule
    start = time.perf_counter()
    todo = [s for s in ("train", "val") if s not in dm.features and dm.splits.get(s) is not None]
    for split in todo:
        dm.features[split] = compute_features(trainer, pl_module, split)
    if todo:
        log.info("[freeze] cached backbone features for %s in %.1f s", list(dm.features), time.perf_counter() - start)
