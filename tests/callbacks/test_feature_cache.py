"""Frozen-phase feature cache: same head as the uncached path, then normal fine-tuning."""
from __future__ import annotations

import torch

from cifar_ft.train import train
from tests.helpers import Snapshot, state

SNAP = "+callbacks.snapshot._target_=tests.helpers.Snapshot"


def head_after(cfg_factory, name: str, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = cfg_factory("trainer.max_epochs=3", "callbacks.freeze.freeze_epochs=3", "model.head_dropout=0.0",
                      "trainer.deterministic=true", SNAP, *overrides, name=name)
    train(cfg)
    return state(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")


def test_cached_and_uncached_frozen_phase_give_the_same_head(cfg_factory):
    cached = head_after(cfg_factory, "cached", "callbacks.freeze.feature_cache=true")
    assert set(Snapshot.datamodule.cached_splits()) == {"train", "val"}  # the cache was really used
    initial = Snapshot.initial
    plain = head_after(cfg_factory, "plain", "callbacks.freeze.feature_cache=false")
    assert Snapshot.datamodule.cached_splits() == []
    assert torch.allclose(cached["head.weight"], plain["head.weight"], atol=1e-5, rtol=1e-4)
    assert torch.allclose(cached["head.bias"], plain["head.bias"], atol=1e-5, rtol=1e-4)
    # the head did learn (so the equality is not trivial), and the frozen backbone did not move
    assert (cached["head.weight"] - initial["head.weight"]).abs().max() > 1e-2
    for key in cached:
        if key.startswith("backbone."):
            assert torch.equal(cached[key], initial[key]), key


def test_cache_is_dropped_when_the_backbone_unfreezes(cfg_factory):
    train(cfg_factory("trainer.max_epochs=2", "callbacks.freeze.freeze_epochs=1", SNAP))
    dm = Snapshot.datamodule
    assert dm.cached_splits() == [] and dm.augmenting()  # epoch 1 trained on augmented images
