"""Images of more than 8 bits per channel keep their picture: 16-bit greyscale (PNG, TIFF) and 48-bit RGB
are scaled by 255/65535, never clipped to white; 32-bit integer and float pixels, which have no fixed
range, are refused in one line naming the file and the mode (in memory, lazily, and in predict)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cifar_ft.data.image_folder import ImageFolderDataModule
from cifar_ft.data.images import decode_array
from cifar_ft.errors import ConfigError
from tests.data.test_image_folder import KW, write_folder

GRADIENT = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64).astype(np.uint16)  # 0 .. 65472


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path, suffix):
    path = tmp_path / f"g{suffix}"
    Image.fromarray(GRADIENT).save(path)
    assert Image.open(path).mode.startswith("I")  # what PIL opens (convert("RGB") of it: nearly all 255)
    got = decode_array(str(path), None)
    want = np.round(GRADIENT / 257.0)
    assert got.shape == (32, 32, 3) and np.abs(got[..., 0].astype(float) - want).max() <= 1
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert 120 < got.mean() < 135  # mid-grey on average, as the 16-bit values are


def test_48_bit_rgb_keeps_each_channel(tmp_path):
    rgb = np.stack([GRADIENT, GRADIENT[::-1], np.full_like(GRADIENT, 30000)], axis=-1)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # OpenCV writes BGR
    got = decode_array(str(tmp_path / "c.png"), None).astype(float)
    assert np.abs(got - np.round(rgb / 257.0)).max() <= 1


def _plant(root: Path, array: np.ndarray) -> Path:
    write_folder(root, per_class=6)
    path = root / "train" / "cat" / "measurement.tif"
    Image.fromarray(array).save(path)
    return path


@pytest.mark.parametrize("array,mode", [(np.full((32, 32), 1000, np.int32), "I"),
                                        (np.random.default_rng(0).random((32, 32)).astype(np.float32), "F")])
@pytest.mark.parametrize("in_memory", [True, False])
def test_pixels_without_a_range_are_refused_naming_file_and_mode(tmp_path, array, mode, in_memory):
    path = _plant(tmp_path, array)
    dm = ImageFolderDataModule(root=str(tmp_path), in_memory=in_memory, **KW)
    with pytest.raises(ConfigError, match=rf"measurement.tif: .* \(PIL mode {mode}\) have no fixed range"):
        dm.setup("fit")
    with pytest.raises(ConfigError, match=f"PIL mode {mode}"):
        decode_array(str(path), 32)


def test_a_16_bit_folder_trains_on_its_pictures_not_on_white(tmp_path):
    for ci, cls in enumerate(("dark", "light")):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(6):
            grey = np.full((32, 32), 12000 + 40000 * ci + i, np.uint16)
            Image.fromarray(grey).save(tmp_path / "train" / cls / f"{i}.png")
    dm = ImageFolderDataModule(root=str(tmp_path), **KW)
    dm.setup("fit")
    images, labels = dm.splits["train"].images, dm.splits["train"].labels
    means = [float(images[labels == c].float().mean()) for c in (0, 1)]
    assert abs(means[0] - 12000 / 257) < 2 and abs(means[1] - 52000 / 257) < 2  # two classes, two greys
