"""Images as uint8 tensors (N, 3, H, W) + int64 labels, the datasets that serve them, and decoding.

Everything downstream works on uint8 batches; float conversion, resizing and normalisation happen
per batch on the training device (see `transforms.py`), which keeps host memory and workers cheap.
"""
from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from cifar_ft.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass
class ImageSet:
    """Images (uint8, N×3×H×W) with labels; `paths` set for lazily decoded folders."""

    images: torch.Tensor | None
    labels: torch.Tensor
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> ImageSet:
        images = self.images[idx] if self.images is not None else None
        paths = [self.paths[i] for i in idx.tolist()] if self.paths is not None else None
        return ImageSet(images, self.labels[idx], paths)


class TensorImageDataset(Dataset):
    """Indexes an in-memory ImageSet; `__getitems__` slices whole batches at once (no per-item collate).

    Items are (image uint8, label, index): the index lets cached backbone features stand in for images."""

    def __init__(self, data: ImageSet, sample_transform: Callable | None = None) -> None:
        self.data = data
        self.sample_transform = sample_transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        img = self.data.images[i]
        return (self.sample_transform(img) if self.sample_transform else img), self.data.labels[i], i

    def __getitems__(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(idx, dtype=torch.long)
        images = self.data.images[index]
        if self.sample_transform is not None:
            images = torch.stack([self.sample_transform(img) for img in images])
        return images, self.data.labels[index], index


class FileImageDataset(Dataset):
    """Decodes image files on demand (folders too large for the in-memory cache). `open_source()`
    is called once per worker process (zip handles do not survive a fork); its `read(name)` gives
    bytes or a path."""

    def __init__(self, data: ImageSet, open_source: Callable[[], object], size: int,
                 sample_transform: Callable | None = None) -> None:
        self.data, self.open_source, self.size, self.sample_transform = data, open_source, size, sample_transform
        self._source = None

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self._source is None:
            self._source = self.open_source()
        img = decode_image(self._source.read(self.data.paths[i]), self.size, self.data.paths[i])
        if img is None:  # broke after the scan: a black image keeps the batch shape
            img = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return (self.sample_transform(img) if self.sample_transform else img), self.data.labels[i], i


def collate_batch(batch):
    """DataLoader collate for datasets whose `__getitems__` already returns a stacked batch."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


def check_pixels(im: Image.Image, name: str | None) -> None:
    """ConfigError (one line, naming the file and mode) for pixels with no fixed range: 32-bit integers
    and floats (a TIFF of measurements). Converting them as PIL does gives a blank image (all 0 or 255)."""
    if im.mode in ("F", "I") and not (im.mode == "I" and im.format == "PNG"):
        kind = "float" if im.mode == "F" else "32-bit integer"
        raise ConfigError(f"{name or 'an input image'}: {kind} pixels (PIL mode {im.mode}) have no fixed range, so "
                          "they cannot be scaled to 8 bits without guessing; save the images as 8- or 16-bit")


def to_rgb(im: Image.Image, name: str | None = None) -> Image.Image:
    """8-bit RGB with the image's own range: 16-bit greyscale (PNG, TIFF) scaled by 255/65535, not clipped
    as PIL's `convert("RGB")` does (which turns almost every 16-bit pixel white)."""
    check_pixels(im, name)
    if im.mode.startswith("I;16") or im.mode == "I":  # "I": a 16-bit PNG as older PIL opens it
        wide = np.asarray(im).astype(np.uint32)
        im = Image.fromarray(((wide * 255 + 32767) // 65535).clip(0, 255).astype(np.uint8), mode="L")
    return im.convert("RGB")


def decode_array(src: bytes | str, size: int | None, name: str | None = None) -> np.ndarray | None:
    """Decode to a uint8 (H, W, 3) RGB array (`to_rgb`); with `size`, resize the shorter side and
    center-crop square. None if the file cannot be read as an image; ConfigError naming `name` for pixels
    with no fixed range (`check_pixels`)."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im = to_rgb(im, name or (src if isinstance(src, str) else None))
            if size is not None and im.size != (size, size):
                scale = size / min(im.size)
                w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
                im = im.resize((w, h), Image.BICUBIC, reducing_gap=3.0)
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            return np.asarray(im, dtype=np.uint8)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - PIL raises many types for corrupt files
        return None


def decode_image(src: bytes | str, size: int | None, name: str | None = None) -> torch.Tensor | None:
    """`decode_array` as a uint8 (3, H, W) tensor; None if the file cannot be read as an image."""
    arr = decode_array(src, size, name)
    return None if arr is None else torch.from_numpy(arr.copy()).permute(2, 0, 1)


def fits_in_memory(count: int, size: int, limit_gb: float) -> bool:
    """Whether `count` uint8 RGB images of `size`² fit in the in-memory cache budget (GB)."""
    return count * 3 * size * size / 1e9 <= limit_gb and math.isfinite(limit_gb)
