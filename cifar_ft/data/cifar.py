"""`data=cifar10|cifar100`: torchvision's CIFAR as uint8 tensors; offline when the batches are on disk."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cifar_ft.data.choices import DATASETS
from cifar_ft.data.datamodule import ImageDataModule
from cifar_ft.data.images import ImageSet
from cifar_ft.errors import ConfigError, check_choice


def load_cifar(name: str, root: str, train: bool, download: bool) -> tuple[ImageSet, list[str]]:
    """torchvision's CIFAR10/100 as uint8 tensors; offline when `root` holds the extracted batches."""
    import torchvision

    cls = getattr(torchvision.datasets, DATASETS[check_choice("data.dataset", name, DATASETS)])
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


class CIFARDataModule(ImageDataModule):
    """Seeded stratified train/val split of the 50k training images; test = the official 10k."""

    def __init__(self, dataset: str = "cifar10", root: str = "data", download: bool = True,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.dataset = check_choice("data.dataset", dataset, DATASETS)
        self.root, self.download = root, download

    def prepare_data(self) -> None:
        load_cifar(self.dataset, self.root, True, self.download)
        load_cifar(self.dataset, self.root, False, self.download)

    def _load(self):
        full, names = load_cifar(self.dataset, self.root, True, self.download)
        test, _ = load_cifar(self.dataset, self.root, False, self.download)
        train, val = self.split_train_val(full)
        return train, val, test, names
