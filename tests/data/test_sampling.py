"""Splits and training order: stratified hold-outs, the epoch-seeded resumable sampler."""
from __future__ import annotations

import pytest
import torch

from cifar_ft.data.sampling import EpochShuffleSampler, stratified_split
from cifar_ft.errors import ConfigError


def test_stratified_split_sizes_and_proportions():
    labels = torch.arange(1000) % 10
    keep, held = stratified_split(labels, 100, seed=3)
    assert len(keep) == 900 and len(held) == 100
    assert set(keep.tolist()).isdisjoint(held.tolist())
    assert torch.bincount(labels[held], minlength=10).tolist() == [10] * 10
    keep2, held2 = stratified_split(labels, 100, seed=3)
    assert torch.equal(held, held2)
    _, held3 = stratified_split(labels, 100, seed=4)
    assert not torch.equal(held, held3)
    _, frac = stratified_split(labels, 0.25, seed=0)
    assert len(frac) == 250


def test_stratified_split_uneven_classes_sums_exactly():
    labels = torch.tensor([0] * 7 + [1] * 13 + [2] * 31)
    _, held = stratified_split(labels, 10, seed=0)
    assert len(held) == 10
    counts = torch.bincount(labels[held], minlength=3)
    assert counts.tolist() in ([1, 3, 6], [2, 2, 6], [1, 2, 7])


def test_split_rejects_bad_size():
    with pytest.raises(ConfigError, match=r"data.val_size=5000 is not valid for a set of 100 images; valid: a count"):
        stratified_split(torch.arange(100) % 10, 5000, 0, "data.val_size")


def test_epoch_sampler_depends_on_epoch_only():
    s = EpochShuffleSampler(50, seed=1)
    s.set_epoch(2)
    first = list(s)
    s2 = EpochShuffleSampler(50, seed=1)
    s2.set_epoch(2)
    assert list(s2) == first and sorted(first) == list(range(50))
    s2.set_epoch(3)
    assert list(s2) != first


def test_epoch_sampler_passes_see_every_image_then_a_fresh_subset():
    one = list(EpochShuffleSampler(40, seed=3, epoch=1))
    s = EpochShuffleSampler(40, seed=3, epoch=1, passes=1.5)
    order = list(s)
    assert len(s) == len(order) == 60
    assert order[:40] == one  # the first pass is the passes=1 permutation
    assert sorted(order[:40]) == list(range(40))
    second = order[40:]
    assert len(set(second)) == 20 and second != one[:20]  # a random half, no image twice within it


def test_epoch_sampler_passes_resume_skips_inside_the_longer_epoch():
    order = list(EpochShuffleSampler(30, seed=0, epoch=2, passes=2.0))
    s = EpochShuffleSampler(30, seed=0, epoch=2, passes=2.0)
    s.skip = 37
    assert list(s) == order[37:]
