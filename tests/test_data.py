"""Data: split sizes and stratification, determinism, transforms that follow the backbone."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from cifar_ft.data import SyntheticDataModule
from cifar_ft.datasets import stratified_split, synthetic_images
from cifar_ft.errors import ConfigError, find_user_error
from cifar_ft.resume import EpochShuffleSampler
from cifar_ft.transforms import BatchTransform, mix_batch


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
    with pytest.raises(ConfigError, match="holdout size 5000"):
        stratified_split(torch.arange(100) % 10, 5000, 0)


def test_synthetic_datamodule_split_sizes(cfg_factory):
    cfg = cfg_factory("data.train_size=1000", "data.val_size=200", "data.test_size=300")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert (len(dm.splits["train"]), len(dm.splits["val"]), len(dm.splits["test"])) == (800, 200, 300)
    assert dm.class_names == [f"class_{i}" for i in range(10)]
    assert dm.splits["train"].images.dtype == torch.uint8


def test_synthetic_is_deterministic_and_structured():
    a, b = synthetic_images(200, 4, 32, seed=0), synthetic_images(200, 4, 32, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # class structure: class means differ far more than noise between two images of one class
    means = torch.stack([a.images[a.labels == c].float().mean(0) for c in range(4)])
    assert (means[0] - means[1]).abs().mean() > 10


def test_epoch_sampler_depends_on_epoch_only():
    s = EpochShuffleSampler(50, seed=1)
    s.set_epoch(2)
    first = list(s)
    s2 = EpochShuffleSampler(50, seed=1)
    s2.set_epoch(2)
    assert list(s2) == first and sorted(first) == list(range(50))
    s2.set_epoch(3)
    assert list(s2) != first


@pytest.mark.parametrize("model,size,mean", [("vit_base", 224, 0.5), ("resnet18", 224, 0.485),
                                              ("tiny", 32, 0.5)])
def test_transforms_follow_the_model_config(cfg_factory, model, size, mean):
    cfg = cfg_factory(f"model={model}", "data.batch_size=4")
    dm = instantiate(cfg.data)
    assert dm.input_size == size and dm.mean[0] == pytest.approx(mean)
    x = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = dm.batch_transform(train=False)(x)
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32
    # white pixels normalise to (1 - mean) / std with this backbone's statistics
    expected = (1 - torch.tensor(dm.mean)) / torch.tensor(dm.std)
    assert torch.allclose(out[0, :, size // 2, size // 2], expected, atol=1e-5)


def test_normalise_then_resize_equals_resize_then_normalise():
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    tf = BatchTransform(96, [0.4, 0.5, 0.6], [0.2, 0.25, 0.3], train=False)
    ref = torch.nn.functional.interpolate(x.float() / 255, size=(96, 96), mode="bilinear", align_corners=False)
    ref = (ref - torch.tensor([0.4, 0.5, 0.6]).view(1, 3, 1, 1)) / torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    assert torch.allclose(tf(x), ref, atol=1e-4)


@pytest.mark.parametrize("preset", ["basic", "jitter", "rrc", "none"])
def test_train_presets_shape_seed_and_variety(preset):
    x = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    tf = BatchTransform(64, [0.5] * 3, [0.5] * 3, train=True, preset=preset)
    a = tf(x, torch.Generator().manual_seed(0))
    b = tf(x, torch.Generator().manual_seed(0))
    c = tf(x, torch.Generator().manual_seed(1))
    assert a.shape == (8, 3, 64, 64) and torch.equal(a, b)
    assert torch.equal(a, c) == (preset == "none")


def test_basic_preset_only_shifts_and_flips():
    # A pad-crop + flip keeps every pixel value from the image or the zero padding.
    x = torch.randint(1, 256, (4, 3, 32, 32), dtype=torch.uint8)
    tf = BatchTransform(32, [0.0] * 3, [1 / 255] * 3, train=True, preset="basic")
    out = tf(x, torch.Generator().manual_seed(0)).round().to(torch.int64)
    for i in range(4):
        values = set(out[i].unique().tolist())
        assert values <= set(x[i].unique().tolist()) | {0}


def test_validation_batches_never_augmented(cfg_factory):
    cfg = cfg_factory("data.augment=jitter")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    x = dm.splits["val"].images[:4]
    out1 = dm.on_after_batch_transfer((x, torch.zeros(4, dtype=torch.long), torch.arange(4)), 0)[0]  # no trainer
    assert torch.equal(out1, dm.batch_transform(False)(x))


def test_mixup_soft_targets_sum_to_one():
    x = torch.randn(6, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for alpha in [(0.4, 0.0), (0.0, 1.0)]:
        xm, ym = mix_batch(x, y, 3, alpha[0], alpha[1], seed=5)
        assert xm.shape == x.shape and ym.shape == (6, 3)
        assert torch.allclose(ym.sum(1), torch.ones(6))


def test_batch_size_larger_than_data_is_rejected():
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=1000,
                             train_size=200, test_size=50, val_size=40)
    with pytest.raises(ConfigError, match="data.batch_size=1000 is larger than the training set"):
        dm.setup("fit")


def test_unknown_augment_preset_is_rejected(cfg_factory):
    with pytest.raises(Exception) as info:
        instantiate(cfg_factory("data.augment=nope").data)
    err = find_user_error(info.value)
    assert err is not None and "data.augment='nope'" in str(err) and "valid: none, basic" in str(err)
