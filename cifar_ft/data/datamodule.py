"""`ImageDataModule`: the shared machinery of every data module (CIFAR, image folders, synthetic).

Each module holds its splits as uint8 images, serves uint8 batches, and turns them into normalised
float batches at the backbone's input size in `on_after_batch_transfer`, i.e. on the training
device. Validation and test batches always get the eval transform. It implements the
`FrozenPhaseData` contract (cifar_ft.contracts) that the freeze schedule and feature cache rely on.
"""
from __future__ import annotations

import logging
import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from cifar_ft.data.images import ImageSet, TensorImageDataset, collate_batch
from cifar_ft.data.mixup import mix_batch
from cifar_ft.data.sampling import EpochShuffleSampler, ResumableLoader, stratified_split
from cifar_ft.data.transforms import AugmentOptions, BatchTransform, check_preset, sample_transform
from cifar_ft.errors import ConfigError

log = logging.getLogger(__name__)


class ImageDataModule(L.LightningDataModule):
    """Subclasses implement `_load()` returning (train, val, test, class names).

    `augment` names a preset of `transforms.PRESETS`; `augment_options` are the fields of
    `transforms.AugmentOptions` (pad_fraction, color_jitter, ...), each a `data.<name>` config key.
    """

    def __init__(self, input_size: int, mean: list[float], std: list[float], batch_size: int = 128,
                 eval_batch_size: int | None = None, num_workers: int | str = "auto",
                 val_size: int | float = 5000, seed: int = 0, augment: str = "basic",
                 mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, eval_crop_pct: float = 1.0,
                 on_device: bool | str = "auto", eval_input_size: int | None = None,
                 passes_per_epoch: float = 1.0, **augment_options: Any) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size={batch_size} must be >= 1")
        self.input_size, self.mean, self.std = int(input_size), list(mean), list(std)
        self.eval_input_size = int(eval_input_size or input_size)  # FixRes: validation and test at this size
        self._train_size: int | None = None  # progressive resizing: this size instead of input_size
        self.batch_size, self.eval_batch_size = int(batch_size), int(eval_batch_size or batch_size)
        self.num_workers, self.val_size, self.seed = num_workers, val_size, int(seed)
        self.augment = check_preset(augment)
        self.augment_options = AugmentOptions.from_options(augment_options)
        self.mixup_alpha, self.cutmix_alpha = float(mixup_alpha), float(cutmix_alpha)
        self.eval_crop_pct = eval_crop_pct
        if not passes_per_epoch > 0:
            raise ConfigError(f"data.passes_per_epoch={passes_per_epoch} must be > 0 (1: each image once per epoch)")
        self.passes_per_epoch = float(passes_per_epoch)  # training images per epoch, in passes (sampling.py)
        self.on_device = on_device  # auto: in-memory uint8 sets live on the GPU (no loader, no copies)
        self.splits: dict[str, ImageSet | None] | None = None
        self._class_names: list[str] | None = None
        self.out_dtype = torch.float32
        self._augment_enabled = True  # the freeze schedule turns it off for cached frozen epochs
        self._features: dict[str, torch.Tensor] = {}  # split -> cached backbone features (N, F)
        self._transforms: dict[tuple, BatchTransform] = {}
        self._train_loader: ResumableLoader | None = None
        self._train_position: dict | None = None  # from a checkpoint, for the next train loader

    # ---- loading -------------------------------------------------------------------------
    def _load(self) -> tuple[ImageSet | None, ImageSet | None, ImageSet | None, list[str]]:
        raise NotImplementedError

    def _ensure_loaded(self) -> dict[str, ImageSet | None]:
        if self.splits is None:
            train, val, test, names = self._load()
            self.splits, self._class_names = {"train": train, "val": val, "test": test}, names
            sizes = {k: (len(v) if v is not None else 0) for k, v in self.splits.items()}
            log.info("%s: %d classes, split sizes %s", type(self).__name__, len(names), sizes)
        return self.splits

    def split_train_val(self, full: ImageSet, of: int | None = None) -> tuple[ImageSet, ImageSet]:
        """Seeded, stratified hold-out of `val_size` images from `full`: a count, or a fraction of
        `of` images (default: of `full`)."""
        size = self.val_size
        if isinstance(size, float) and size < 1:
            size = int(round(size * (of or len(full))))
        keep, held = stratified_split(full.labels, size, self.seed, "data.val_size")
        return full.subset(keep), full.subset(held)

    @property
    def class_names(self) -> list[str]:
        self._ensure_loaded()
        return list(self._class_names)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def stored_size(self) -> int | None:
        """Side (px) of the images as stored before the device-side resize (32 for CIFAR)."""
        for data in (self.splits or {}).values():
            if data is not None and data.images is not None:
                return int(data.images.shape[-1])
        return None

    def setup(self, stage: str | None = None) -> None:
        splits = self._ensure_loaded()
        if stage in (None, "fit"):
            for name in ("train", "val"):
                if not splits[name]:
                    raise ConfigError(f"{type(self).__name__}: no {name} images to fit on")
            if self.batch_size > len(splits["train"]):
                raise ConfigError(f"data.batch_size={self.batch_size} is larger than the training set "
                                  f"({len(splits['train'])} images); use at most {len(splits['train'])}")
        if stage == "test" and not splits["test"]:
            raise ConfigError(f"{type(self).__name__}: no test images")
        if self.trainer is not None and "bf16" in str(self.trainer.precision):
            self.out_dtype = torch.bfloat16  # what autocast would cast to anyway: half the bytes
        self._move_to_device()

    def _move_to_device(self) -> None:
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        wanted = self.on_device is True or (self.on_device == "auto" and device.type == "cuda"
                                            and sample_transform(self.augment) is None)
        if not wanted or device.type == "cpu":
            return
        for name, data in self.splits.items():
            if data is not None and data.images is not None and data.images.device != device:
                self.splits[name] = ImageSet(data.images.to(device), data.labels.to(device), data.paths)

    # ---- the FrozenPhaseData contract (cifar_ft.contracts) ---------------------------------
    def set_augment(self, enabled: bool) -> None:
        self._augment_enabled = bool(enabled)

    def augmenting(self) -> bool:
        return self._augment_enabled

    def set_train_size(self, px: int | None) -> None:  # the ResizableTrainData contract
        self._train_size = int(px) if px else None

    def cache_features(self, split: str, features: torch.Tensor) -> None:
        self._features[split] = features

    def clear_features(self) -> None:
        self._features.clear()

    def cached_splits(self) -> list[str]:
        return list(self._features)

    def split_size(self, split: str) -> int:
        data = self._ensure_loaded().get(split)
        return len(data) if data is not None else 0

    def ordered_loader(self, split: str) -> DataLoader:
        """Every image of `split` once, in index order, un-augmented (for feature caching)."""
        ds = self._dataset(split, False)
        return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, num_workers=self._workers(ds),
                          collate_fn=collate_batch, pin_memory=self._pin(ds), generator=self._own_generator())

    def sample_loader(self, split: str, count: int, seed: int) -> DataLoader:
        """`count` images of `split` drawn at random (seeded, without replacement), un-augmented (the
        StatisticsData contract: precise BatchNorm statistics)."""
        ds = self._dataset(split, False)
        pick = torch.randperm(len(ds), generator=torch.Generator().manual_seed(seed))[:count]
        return DataLoader(Subset(ds, pick.tolist()), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self._workers(ds), collate_fn=collate_batch, pin_memory=self._pin(ds),
                          generator=self._own_generator())

    def eval_transform(self) -> BatchTransform:
        return self.batch_transform(False)

    def preprocessing(self) -> dict:
        """How an image must be prepared to look like this data to a model: saved in checkpoints."""
        return {"image_size": self.stored_size, "eval_crop_pct": float(self.eval_crop_pct)}

    # ---- loaders -------------------------------------------------------------------------
    def _own_generator(self) -> torch.Generator:
        """For loaders that do not shuffle: a DataLoader draws its workers' base seed from the global
        RNG at every `iter()` unless it has a generator. With one of its own, validation, test and the
        feature cache never move the training's random stream, so a run's result does not depend on
        how often it validates, and a stop during validation resumes exactly (callbacks/stop_on_signal.py)."""
        return torch.Generator().manual_seed(self.seed)

    @staticmethod
    def _pin(ds: Dataset) -> bool:
        data = getattr(ds, "data", None)
        on_gpu = data is not None and data.images is not None and data.images.is_cuda
        return torch.cuda.is_available() and not on_gpu

    def _dataset(self, split: str, train: bool) -> Dataset:
        data = self._ensure_loaded()[split]
        return TensorImageDataset(data, sample_transform(self.augment) if train else None)

    def _workers(self, dataset: Dataset) -> int:
        if self.num_workers != "auto":
            return int(self.num_workers)
        # In-memory slicing is faster in the main process than shipping batches between processes.
        in_memory = isinstance(dataset, TensorImageDataset) and dataset.sample_transform is None
        return 0 if in_memory else min(8, os.cpu_count() or 1)

    def _loader(self, split: str, train: bool) -> DataLoader:
        ds = self._dataset(split, train)
        workers = self._workers(ds)
        common = dict(num_workers=workers, collate_fn=collate_batch, pin_memory=self._pin(ds),
                      persistent_workers=workers > 0)
        if not train:
            return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, generator=self._own_generator(),
                              **common)
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        # Resumable mid-epoch; sharded across DDP ranks by the sampler itself.
        loader = ResumableLoader(ds, batch_size=self.batch_size, drop_last=True,
                                 sampler=EpochShuffleSampler(len(ds), self.seed, epoch, self.passes_per_epoch),
                                 **common)
        if self._train_position is not None:
            loader.load_state_dict(self._train_position)
            self._train_position = None
        self._train_loader = loader
        return loader

    # Lightning restores its own copy of the loader position only if the loader is built after the
    # checkpoint is read, but `estimated_stepping_batches` builds it earlier: keep one here too.
    def state_dict(self) -> dict:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state: dict) -> None:
        self._train_position = state.get("train_loader")

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    # ---- device-side transforms ----------------------------------------------------------
    def batch_transform(self, train: bool) -> BatchTransform:
        """The device-side transform, kept per mode (it holds reusable output buffers in a run)."""
        size = (self._train_size or self.input_size) if train else self.eval_input_size
        key = (train, size, self.augment, self.out_dtype, self.trainer is not None)
        if key not in self._transforms:
            self._transforms[key] = BatchTransform(
                size, self.mean, self.std, train=train,
                preset=self.augment if train else "none",
                options=self.augment_options, eval_crop_pct=self.eval_crop_pct, out_dtype=self.out_dtype,
                reuse_buffers=self.trainer is not None)
        return self._transforms[key]

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y, index = batch
        training = self.trainer is not None and self.trainer.training
        split = "train" if training else "val" if self.trainer is not None and self.trainer.validating else None
        if split in self._features:  # frozen backbone: its features stand in for the images
            return self._features[split][index.to(self._features[split].device)], y
        if not training or not self._augment_enabled:
            testing = self.trainer is not None and self.trainer.testing
            # test batches keep their data-set indices: per-image predictions name their image
            return (self.batch_transform(False)(x), y, index) if testing else (self.batch_transform(False)(x), y)
        seed = self._batch_seed()
        gen = torch.Generator(device=x.device).manual_seed(seed)
        x = self.batch_transform(True)(x, gen)
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            x, y = mix_batch(x, y, self.num_classes, self.mixup_alpha, self.cutmix_alpha, seed)
        return x, y

    def _batch_seed(self) -> int:
        # A function of (seed, epoch, batch index): identical after a resume, independent of RNG state.
        loop = self.trainer.fit_loop
        batch = loop.epoch_loop.batch_progress.current.ready
        rank = self.trainer.global_rank
        return (self.seed * 1_000_003 + loop.epoch_progress.current.processed * 100_003
                + batch * 101 + rank) % (2**63)
