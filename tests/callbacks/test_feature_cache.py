"""Frozen-phase feature cache: same head as the uncached path, then normal fine-tuning."""
from __future__ import annotations

import pytest
import torch

from cifar_ft.train import train
from tests.helpers import Snapshot, state

SNAP = "+callbacks.snapshot._target_=tests.helpers.Snapshot"


def head_after(cfg_factory, name: str, *overrides: str) -> dict[str, torch.Tensor]:
    cfg = cfg_factory("trainer.max_epochs=3", "strategy.frozen_epochs=3", "model.head_dropout=0.0",
                      "trainer.deterministic=true", SNAP, *overrides, name=name)
    train(cfg)
    return state(f"{cfg.paths.output_dir}/checkpoints/last.ckpt")


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
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


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_cache_is_dropped_when_the_backbone_unfreezes(cfg_factory):
    train(cfg_factory("trainer.max_epochs=2", "strategy.frozen_epochs=1", SNAP))
    dm = Snapshot.datamodule
    assert dm.cached_splits() == [] and dm.augmenting()  # epoch 1 trained on augmented images


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_limited_epoch_caches_only_the_splits_it_runs_whole(cfg_factory):
    """`trainer.limit_train_batches=2` runs 2 of 15 batches: caching all 480 images would cost more
    backbone passes than the run makes; validation still runs whole and is cached."""
    train(cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=1", "+trainer.limit_train_batches=2",
                      "callbacks.freeze.feature_cache=true", SNAP))
    assert Snapshot.datamodule.cached_splits() == ["val"]
    train(cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=1", "+trainer.limit_val_batches=1",
                      "callbacks.freeze.feature_cache=true", SNAP, name="val_limited"))
    assert Snapshot.datamodule.cached_splits() == ["train"]


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_the_cache_shows_its_progress_when_the_run_has_a_progress_bar(cfg_factory, monkeypatch):
    import cifar_ft.callbacks.feature_cache as feature_cache

    bars = []

    def recording(iterable, **kwargs):
        bars.append(kwargs)
        return iterable

    monkeypatch.setattr(feature_cache, "tqdm", recording)
    monkeypatch.setattr(feature_cache, "interactive", lambda: True)  # a terminal (a log file gets lines: test_progress)
    train(cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=1", "trainer.enable_progress_bar=true",
                      "callbacks.freeze.feature_cache=true"))
    assert [b["desc"] for b in bars] == ["[freeze] caching train features", "[freeze] caching val features"]
    assert all(b["disable"] is None for b in bars)  # shown (on a terminal)
    bars.clear()
    train(cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=1", "callbacks.freeze.feature_cache=true",
                      name="quiet"))
    assert bars and all(b["disable"] is True for b in bars)  # no progress bar in the run: none for the cache
