"""Image sources as uint8 tensors (N, 3, H, W) + int64 labels, and the splits between them.

Everything downstream works on uint8 batches; float conversion, resizing and normalisation happen
per batch on the training device (see `transforms.py`), which keeps host memory and workers cheap.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from cifar_ft.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """Images (uint8, N×3×H×W) with labels; `paths` set for lazily decoded folders."""

    images: torch.Tensor | None
    labels: torch.Tensor
    paths: list[str] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, idx: torch.Tensor) -> "ImageSet":
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


def collate_batch(batch):
    """DataLoader collate for datasets whose `__getitems__` already returns a stacked batch."""
    if isinstance(batch, tuple):
        return batch
    return torch.utils.data.default_collate(batch)


def stratified_split(labels: torch.Tensor, holdout: int | float, seed: int
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split keeping class proportions: returns (keep_idx, holdout_idx), both sorted."""
    n = len(labels)
    count = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 <= count < n:
        raise ConfigError(f"holdout size {holdout} is not valid for a set of {n} images (0 <= size < {n})")
    if count == 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    # Largest-remainder apportionment: class shares sum exactly to `count`.
    exact = counts.double() * count / n
    take = exact.floor().long()
    remainder = count - int(take.sum())
    take[torch.argsort(exact - take, descending=True)[:remainder]] += 1
    held = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        idx = (labels == cls).nonzero().flatten()
        held.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    held_idx = torch.cat(held).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[held_idx] = False
    return mask.nonzero().flatten(), held_idx


def load_cifar(name: str, root: str, train: bool, download: bool) -> tuple[ImageSet, list[str]]:
    """torchvision's CIFAR10/100 as uint8 tensors; offline when `root` holds the extracted batches."""
    import torchvision

    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    folder = Path(root).expanduser() / cls.base_folder
    if not folder.is_dir() and not download:
        raise ConfigError(f"data.root={root!r}: no {cls.base_folder}/ there and data.download=false; "
                          f"point data.root at the folder holding {cls.base_folder}/ or allow the download")
    try:
        ds = cls(root=str(Path(root).expanduser()), train=train, download=download and not folder.is_dir())
    except (OSError, RuntimeError) as err:  # urllib errors are OSErrors
        raise ConfigError(f"data.root={root!r}: cannot load {name} ({err.__class__.__name__}: {err}); "
                          f"offline, download {cls.url} elsewhere and extract it into data.root") from err
    images = torch.from_numpy(np.ascontiguousarray(ds.data)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.as_tensor(ds.targets, dtype=torch.long)), list(ds.classes)


def synthetic_images(num: int, num_classes: int, size: int, seed: int, noise: float = 0.35,
                     split_offset: int = 0) -> ImageSet:
    """Images with learnable class structure: each class is a smooth colour pattern, randomly
    shifted, flipped, brightness-scaled and noised per image (so it is not trivially separable)."""
    gen = torch.Generator().manual_seed(seed)  # class prototypes depend on `seed` only
    low = torch.rand(num_classes, 3, 4, 4, generator=gen)
    protos = torch.nn.functional.interpolate(low, size=(size, size), mode="bicubic", align_corners=False)
    gen.manual_seed(seed * 7919 + split_offset + 1)  # images differ per split
    labels = torch.arange(num) % num_classes
    labels = labels[torch.randperm(num, generator=gen)]
    shift = torch.randint(-size // 8, size // 8 + 1, (num, 2), generator=gen)
    imgs = protos[labels]
    imgs = torch.stack([torch.roll(im, (int(s[0]), int(s[1])), dims=(1, 2)) for im, s in zip(imgs, shift)])
    flip = torch.rand(num, generator=gen) < 0.5
    imgs[flip] = imgs[flip].flip(-1)
    imgs = imgs * (0.7 + 0.6 * torch.rand(num, 1, 1, 1, generator=gen))
    imgs = imgs + noise * torch.randn(imgs.shape, generator=gen)
    images = (imgs.clamp(0, 1) * 255).round().to(torch.uint8)
    return ImageSet(images, labels.long())


def fits_in_memory(count: int, size: int, limit_gb: float) -> bool:
    """Whether `count` uint8 RGB images of `size`² fit in the in-memory cache budget."""
    return count * 3 * size * size / 1e9 <= limit_gb and math.isfinite(limit_gb)
