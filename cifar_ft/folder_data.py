"""`data=image_folder`: the user's own photos, `root/train/<class>/*` (+ optional val/, test/)."""
from __future__ import annotations

import logging

from torch.utils.data import Dataset

from cifar_ft.data import ImageDataModule
from cifar_ft.datasets import ImageSet, fits_in_memory, stratified_split
from cifar_ft.errors import ConfigError
from cifar_ft.folders import (
    BAD_IMAGE_POLICIES,
    FileImageDataset,
    FolderSource,
    check_readable,
    decode_all,
    native_size,
    scan_split,
)
from cifar_ft.transforms import sample_transform

log = logging.getLogger(__name__)


class ImageFolderDataModule(ImageDataModule):
    """Splits missing on disk are held out of train/ (seeded, stratified): val by `val_size`,
    test by `test_size`. Images are decoded once into memory when they fit in `max_cache_gb`."""

    def __init__(self, root: str, image_size: int | None = None, test_size: int | float = 0.1,
                 in_memory: bool | str = "auto", max_cache_gb: float = 8.0,
                 on_bad_image: str = "skip", max_train_images: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if on_bad_image not in BAD_IMAGE_POLICIES:
            raise ConfigError(f"data.on_bad_image={on_bad_image!r} is not valid; valid: "
                              f"{', '.join(BAD_IMAGE_POLICIES)}")
        if root in (None, "", "???"):
            raise ConfigError("data=image_folder needs data.root=DIR holding train/<class>/<images>")
        self.root, self.image_size, self.test_size = str(root), image_size, test_size
        self.in_memory, self.max_cache_gb, self.on_bad_image = in_memory, max_cache_gb, on_bad_image
        self.max_train_images = max_train_images
        self._stored_size: int | None = None

    def _read(self, source: FolderSource, split: str, names: list[str] | None) -> tuple[ImageSet, list[str]]:
        files, labels, names = scan_split(source, split, names)
        size = self._storage_size(source, files)
        memory = self.in_memory is True or (self.in_memory == "auto"
                                            and fits_in_memory(len(files), size, self.max_cache_gb))
        if memory:
            data = decode_all(source, files, labels, size, self.on_bad_image, f"{split}/ ({len(files)} images)")
        else:
            data = check_readable(source, files, labels, self.on_bad_image)
        return data, names

    def _storage_size(self, source: FolderSource, files: list[str]) -> int:
        # Equal-sized small images (CIFAR as JPEG) keep their native size; others are stored at the
        # backbone's input size unless data.image_size says otherwise.
        if self._stored_size is None:
            self._stored_size = int(self.image_size or min(native_size(source, files[0]), self.input_size))
        return self._stored_size

    def _load(self):
        source = FolderSource(self.root)
        present = [s for s in ("train", "val", "test") if s in source.splits()]
        if not present:
            raise ConfigError(f"data.root={self.root!r} holds none of train/, val/, test/ "
                              f"(found: {source.splits() or 'nothing'})")
        loaded: dict[str, ImageSet | None] = {"train": None, "val": None, "test": None}
        names = None
        for split in present:
            loaded[split], names = self._read(source, split, names)
        train = loaded["train"]
        total = len(train) if train is not None else 0  # fractions are of the whole train/ folder
        if train is not None and loaded["test"] is None:  # before subsampling: a stable test split
            test_n = self.test_size if isinstance(self.test_size, int) or self.test_size >= 1 else \
                int(round(self.test_size * total))
            keep, held = stratified_split(train.labels, test_n, self.seed + 2)
            train, loaded["test"] = train.subset(keep), train.subset(held)
            log.info("No test/ in %s: held out %d training images as test split", self.root, len(held))
        if train is not None and self.max_train_images and len(train) > self.max_train_images:
            _, keep = stratified_split(train.labels, self.max_train_images, self.seed + 1)
            train = train.subset(keep)
        if train is not None and loaded["val"] is None:
            train, loaded["val"] = self.split_train_val(train, of=total)
        return train, loaded["val"], loaded["test"], names

    def _dataset(self, split: str, train: bool) -> Dataset:
        data = self._ensure_loaded()[split]
        if data.images is not None:
            return super()._dataset(split, train)
        tf = sample_transform(self.augment) if train else None
        return FileImageDataset(data, self.root, self._stored_size, tf)

    @property
    def stored_size(self) -> int | None:
        return self._stored_size

