"""Data: split sizes and stratification, determinism, transforms that follow the backbone."""
from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from cifar_ft.data.transforms import BatchTransform
from cifar_ft.errors import find_user_error


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


def test_unknown_augment_preset_is_rejected(cfg_factory):
    with pytest.raises(Exception) as info:
        instantiate(cfg_factory("data.augment=nope").data)
    err = find_user_error(info.value)
    assert err is not None and "data.augment='nope'" in str(err) and "valid: none, basic" in str(err)


def test_random_erasing_changes_only_the_boxes_it_draws():
    from cifar_ft.data.augment import erase_boxes, random_erase

    x = torch.randn(64, 3, 40, 40) + 5  # no zeros of its own
    out = random_erase(x, 0.5, torch.Generator().manual_seed(3))
    boxes = erase_boxes(64, 40, 40, 0.5, torch.Generator().manual_seed(3), x.device)
    expected = x.clone()
    for img, (top, left, h, w) in zip(expected, boxes.tolist()):
        img[:, top:top + h, left:left + w] = 0
    assert torch.equal(out, expected)
    erased = (boxes[:, 2] > 0).sum().item()
    assert 16 < erased < 48  # about half the images got a box
    areas = (boxes[:, 2] * boxes[:, 3])[boxes[:, 2] > 0].float() / 1600
    assert areas.min() >= 0.01 and areas.max() <= 0.4


def test_random_erasing_applies_after_any_preset_in_training_only():
    from cifar_ft.data.transforms import AugmentOptions

    x = torch.randint(1, 256, (16, 3, 32, 32), dtype=torch.uint8)
    on = BatchTransform(32, [0.0] * 3, [1 / 255] * 3, train=True, preset="none",
                        options=AugmentOptions(random_erasing=1.0))
    out = on(x, torch.Generator().manual_seed(0))
    assert (out == 0).any(dim=1).flatten(1).any(1).all()  # every image has an erased (zero) region
    off = BatchTransform(32, [0.0] * 3, [1 / 255] * 3, train=False, options=AugmentOptions(random_erasing=1.0))
    assert not (off(x) == 0).any()
