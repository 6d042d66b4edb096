"""Image folders (`root/<split>/<class>/*`), as a directory or read straight from a .zip.

Images are decoded once into a uint8 cache when they fit in memory; unreadable files are skipped
with one warning listing them (or raise, per `on_bad_image`); grayscale/RGBA become RGB.
"""
from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cifar_ft.datasets import ImageSet
from cifar_ft.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")
BAD_IMAGE_POLICIES = ("skip", "error")


class FolderSource:
    """Lists and reads files under a folder or inside a zip archive, with the same relative names."""

    def __init__(self, root: str) -> None:
        self.root = Path(root).expanduser()
        if not self.root.exists():
            raise ConfigError(f"data.root={root!r} does not exist; it must hold train/<class>/<images> "
                              "(optionally val/ and test/), as a folder or a .zip")
        self.zip = zipfile.ZipFile(self.root) if self.root.suffix == ".zip" else None
        names = self.zip.namelist() if self.zip else None
        self._files = names if names is not None else None

    def splits(self) -> list[str]:
        if self.zip:
            return sorted({n.split("/")[0] for n in self._files if "/" in n})
        return sorted(p.name for p in self.root.iterdir() if p.is_dir())

    def listing(self, split: str) -> dict[str, list[str]]:
        """{class name: sorted image names} for one split; every class folder must hold images."""
        if self.zip:
            found: dict[str, list[str]] = {}
            for name in self._files:
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == split and parts[2]:
                    found.setdefault(parts[1], [])
                    if parts[2].lower().endswith(IMAGE_SUFFIXES):
                        found[parts[1]].append(name)
        else:
            found = {d.name: [str(f) for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
                     for d in (self.root / split).iterdir() if d.is_dir()}
        empty = sorted(c for c, files in found.items() if not files)
        if empty:
            raise ConfigError(f"data.root={str(self.root)!r}: class folder(s) {empty} in {split}/ hold no "
                              f"images ({', '.join(IMAGE_SUFFIXES)}); remove them or add images")
        return {c: sorted(found[c]) for c in sorted(found)}

    def read(self, name: str) -> bytes | str:
        return self.zip.read(name) if self.zip else name


def decode_image(src: bytes | str, size: int | None) -> torch.Tensor | None:
    """Decode to uint8 (3, H, W) RGB; with `size`, resize the shorter side and center-crop square."""
    try:
        with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                scale = size / min(im.size)
                w, h = max(size, round(im.width * scale)), max(size, round(im.height * scale))
                im = im.resize((w, h), Image.BICUBIC, reducing_gap=3.0)
                left, top = (w - size) // 2, (h - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8)
    except Exception:  # noqa: BLE001 - PIL raises many types for corrupt files
        return None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)


def native_size(source: FolderSource, name: str) -> int:
    """Side of the first image: folders of equal-sized images (CIFAR as JPEG) keep their size."""
    img = decode_image(source.read(name), None)
    if img is None:
        raise ConfigError(f"cannot read image {name!r} to find the image size; set data.image_size")
    return max(img.shape[-2:])


def scan_split(source: FolderSource, split: str, class_names: list[str] | None
               ) -> tuple[list[str], torch.Tensor, list[str]]:
    """(file names, labels, class names) of one split; class names must match `class_names`."""
    listing = source.listing(split)
    if not listing:
        raise ConfigError(f"data.root={str(source.root)!r}: {split}/ has no class folders")
    if class_names is not None and list(listing) != class_names:
        raise ConfigError(f"data.root={str(source.root)!r}: classes of {split}/ {list(listing)} differ "
                          f"from train/ {class_names}")
    files, labels = [], []
    for label, cls in enumerate(listing):
        files += listing[cls]
        labels += [label] * len(listing[cls])
    return files, torch.tensor(labels, dtype=torch.long), list(listing)


def decode_all(source: FolderSource, files: list[str], labels: torch.Tensor, size: int,
               on_bad_image: str, desc: str) -> ImageSet:
    """Decode every file once into one uint8 tensor, with a progress bar; handle bad files."""
    from rich.progress import track

    images = torch.empty(len(files), 3, size, size, dtype=torch.uint8)
    ok = torch.ones(len(files), dtype=torch.bool)
    for i, name in enumerate(track(files, description=f"Decoding {desc}", transient=True)):
        img = decode_image(source.read(name), size)
        if img is None:
            ok[i] = False
        else:
            images[i] = img
    return _drop_bad(ImageSet(images, labels, list(files)), ok, on_bad_image)


def check_readable(source: FolderSource, files: list[str], labels: torch.Tensor,
                   on_bad_image: str) -> ImageSet:
    """Lazy path: verify headers once (cheap) so bad files are known before training."""
    ok = torch.ones(len(files), dtype=torch.bool)
    for i, name in enumerate(files):
        try:
            src = source.read(name)
            with Image.open(io.BytesIO(src) if isinstance(src, bytes) else src) as im:
                im.verify()
        except Exception:  # noqa: BLE001
            ok[i] = False
    return _drop_bad(ImageSet(None, labels, list(files)), ok, on_bad_image)


def _drop_bad(data: ImageSet, ok: torch.Tensor, on_bad_image: str) -> ImageSet:
    bad = [data.paths[i] for i in (~ok).nonzero().flatten().tolist()]
    if not bad:
        return data
    listed = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
    if on_bad_image == "error":
        raise ConfigError(f"{len(bad)} unreadable image file(s): {listed} "
                          "(data.on_bad_image=skip skips them)")
    log.warning("Skipping %d unreadable image file(s): %s", len(bad), listed)
    return data.subset(ok.nonzero().flatten())


class FileImageDataset(torch.utils.data.Dataset):
    """Decodes image files on demand (folders too large for the in-memory cache)."""

    def __init__(self, data: ImageSet, root: str, size: int, sample_transform=None) -> None:
        self.data, self.root, self.size, self.sample_transform = data, root, size, sample_transform
        self._source: FolderSource | None = None  # opened per worker process (zip handles don't fork)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        if self._source is None:
            self._source = FolderSource(self.root)
        img = decode_image(self._source.read(self.data.paths[i]), self.size)
        if img is None:  # broke after the scan: a black image keeps the batch shape
            img = torch.zeros(3, self.size, self.size, dtype=torch.uint8)
        return (self.sample_transform(img) if self.sample_transform else img), self.data.labels[i], i
