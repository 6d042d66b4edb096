"""CIFAR-10-C corruptions: each one is the reference's definition (tests/data/cifar_c_reference.py, the
published make_cifar_c.py) on fixed images fed the very same random numbers; deterministic for a seed;
uint8 in, uint8 of the same shape out."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_ft.data import corruption_warp
from cifar_ft.data.corruptions import CORRUPTIONS, SEVERITIES, TorchDraws
from cifar_ft.data.synthetic import synthetic_images
from tests.data import cifar_c_reference as ref

# Largest difference allowed, in uint8 levels: float32 round-off before truncation.
TOLERANCE = {"zoom_blur": 1, "elastic_transform": 1}
DETERMINISTIC = {"defocus_blur", "zoom_blur", "brightness", "contrast", "pixelate", "jpeg_compression"}


class NumpyDraws:
    """`Draws` from numpy's global generator: the reference's own random numbers, in its order."""

    def uniform(self, low, high, shape):
        return torch.from_numpy(np.asarray(np.random.uniform(low, high, size=shape), dtype=np.float64))

    def normal(self, loc, scale, shape):
        return torch.from_numpy(np.asarray(np.random.normal(size=shape, loc=loc, scale=scale), dtype=np.float64))

    def randint(self, low, high, shape):
        return torch.from_numpy(np.asarray(np.random.randint(low, high, size=shape)))

    def poisson(self, lam):
        return torch.from_numpy(np.random.poisson(lam.numpy()).astype(np.float64))


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Two fixed 32 x 32 images with smooth regions, edges and noise (uint8, (2, 3, 32, 32))."""
    return synthetic_images(2, 10, 32, seed=7, noise=0.2).images


def test_the_registry_is_cifar10c():
    assert list(CORRUPTIONS) == ["gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur",
                                 "motion_blur", "zoom_blur", "snow", "frost", "fog", "brightness", "contrast",
                                 "elastic_transform", "pixelate", "jpeg_compression"]
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.fixture
def opencv_warps(monkeypatch):
    """Our warpAffine as the installed OpenCV computes it: OpenCV >= 5 interpolates exactly, where the
    OpenCV that made CIFAR-10-C (and our default) rounds source coordinates to 1/32 pixel."""
    import cv2

    if int(cv2.__version__.split(".")[0]) >= 5:
        monkeypatch.setattr(corruption_warp, "SUBPIXEL_STEPS", 0)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_the_reference_definition(name, images, opencv_warps):
    tolerance = TOLERANCE.get(name, 0)
    for severity in SEVERITIES:
        for k, img in enumerate(images):
            array = img.permute(1, 2, 0).numpy()
            np.random.seed(1000 * severity + k)
            want = np.uint8(getattr(ref, name)(Image.fromarray(array), severity)).astype(int)
            np.random.seed(1000 * severity + k)
            got = CORRUPTIONS[name](img[None].clone(), severity, NumpyDraws())[0].permute(1, 2, 0).numpy()
            diff = np.abs(got.astype(int) - want)
            assert diff.max() <= tolerance and (diff > 1).mean() <= 0.01, (name, severity, k, diff.max())
            assert not np.array_equal(got, array) or name == "elastic_transform" and severity == 1, (name, severity)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_is_deterministic_for_a_seed_and_keeps_uint8_and_shape(name):
    x = synthetic_images(3, 10, 32, seed=3).images
    for severity in (1, 5):
        a = CORRUPTIONS[name](x, severity, TorchDraws(torch.Generator().manual_seed(5)))
        b = CORRUPTIONS[name](x, severity, TorchDraws(torch.Generator().manual_seed(5)))
        c = CORRUPTIONS[name](x, severity, TorchDraws(torch.Generator().manual_seed(6)))
        assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
        assert torch.equal(a, c) == (name in DETERMINISTIC), (name, severity)
    assert not torch.equal(a, x)


def test_warps_round_source_coordinates_to_a_32nd_of_a_pixel_by_default():
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[..., 4:] = 1.0  # a vertical edge
    shift = torch.tensor([[[1.0, 0.0, 0.01], [0.0, 1.0, 0.0]]], dtype=torch.float64)  # 0.01 px to the right
    assert corruption_warp.warp_affine(x, shift)[0, 0, 0, 4] == 1.0  # 0.01 rounds to 0/32
    assert corruption_warp.warp_affine(x, shift, steps=0)[0, 0, 0, 4] == pytest.approx(0.99)
    half = shift.clone()
    half[0, 0, 2] = 0.5
    assert corruption_warp.warp_affine(x, half)[0, 0, 0, 4] == pytest.approx(0.5)


def test_other_image_sizes_are_corrupted_too():
    x = synthetic_images(2, 10, 48, seed=3).images
    for name, fn in CORRUPTIONS.items():
        y = fn(x, 3, TorchDraws(torch.Generator().manual_seed(0)))
        assert y.shape == x.shape and y.dtype == torch.uint8, name
