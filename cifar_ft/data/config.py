"""The data node's schemas (`data=<option>`): every field of `conf/data/*.yaml`, its type, default,
valid values and help. Light: no torch (the augmentation presets are looked up when a value is checked)."""
from __future__ import annotations

from dataclasses import dataclass

from cifar_ft.data.augment_options import AugmentOptions
from cifar_ft.data.choices import DATASETS
from cifar_ft.data.folder_source import BAD_IMAGE_POLICIES
from cifar_ft.schema import knob, schema


def _presets() -> list[str]:
    from cifar_ft.data.transforms import PRESETS

    return list(PRESETS)


def _workers(v: object) -> bool:
    return v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 0)


def _count_or_fraction(v: object) -> bool:
    return (isinstance(v, int) and not isinstance(v, bool) and v >= 0) or (isinstance(v, float) and 0 < v < 1)


COUNT_OR_FRACTION = "an image count >= 0 or a fraction in (0, 1)"


@dataclass
class DataOptions(AugmentOptions):
    """Options every data module takes (`cifar_ft.data.datamodule.ImageDataModule`)."""

    input_size: int = knob("${model.input_size}", "training input side, px (the model's)", ge=16)
    eval_input_size: int | None = knob("${model.test_input_size}",
                                       "validation/test/predict side, px (FixRes); null: input_size", ge=16)
    mean: list[float] = knob("${model.mean}", "per-channel normalisation mean (the model's)", length=3)
    std: list[float] = knob("${model.std}", "per-channel normalisation std (the model's)", length=3, gt=0.0)
    batch_size: int = knob("${model.batch_size}", "images per device and step", ge=1)
    eval_batch_size: int | None = knob(None, "validation/test batch; null: batch_size", ge=1)
    num_workers: int | str = knob("auto", "loader processes; auto: 0 for in-memory sets, else min(cores, 8)",
                                  check=_workers, valid="auto or an integer >= 0")
    passes_per_epoch: float = knob(1.0, "training images per epoch, in passes over train (1.5: all once, a "
                                        "random half again); at most 100 (an epoch's index list)", gt=0.0, le=100.0)
    val_size: int | float = knob(5000, "images held out of train for validation (count, or fraction < 1)",
                                 check=_count_or_fraction, valid=COUNT_OR_FRACTION)
    seed: int = knob("${seed}", "the splits' and augmentations' seed", ge=0, lt=2**32)
    augment: str = knob("basic", "training augmentation preset", choices=_presets)
    mixup_alpha: float = knob(0.0, "> 0 turns mixup on (soft targets)", ge=0.0)
    cutmix_alpha: float = knob(0.0, "> 0 turns cutmix on", ge=0.0)
    eval_crop_pct: float = knob(1.0, "eval: center-crop this fraction before resizing", gt=0.0, le=1.0)


@schema("data", "cifar")
@dataclass
class CIFAROptions(DataOptions):
    """CIFAR-10/100 from torchvision's files (`cifar_ft.data.cifar.CIFARDataModule`)."""

    _target_: str = "cifar_ft.data.cifar.CIFARDataModule"
    dataset: str = knob("cifar10", "which CIFAR", choices=tuple(DATASETS))
    root: str = knob("${paths.data_dir}", "folder with (or for) the downloaded files")
    download: bool = knob(True, "download when absent (offline: a clear error instead)")


@schema("data", "image_folder")
@dataclass
class ImageFolderOptions(DataOptions):
    """Your images: DIR/train/<class>/*.jpg, optional DIR/val and DIR/test, or a .zip of them
    (`cifar_ft.data.image_folder.ImageFolderDataModule`)."""

    _target_: str = "cifar_ft.data.image_folder.ImageFolderDataModule"
    root: str = knob("???", "the image folder or .zip (required)")
    val_size: int | float = knob(0.1, "images of train/ held out for validation (count, or fraction < 1)",
                                 check=_count_or_fraction, valid=COUNT_OR_FRACTION)
    test_size: int | float = knob(0.1, "images of train/ held out for the test when there is no test/",
                                  check=_count_or_fraction, valid=COUNT_OR_FRACTION)
    image_size: int | None = knob(None, "stored side, px; null: native if equal-sized, else the input size", ge=1)
    in_memory: bool | str = knob("auto", "decode once into a uint8 cache (auto: when it fits in max_cache_gb)",
                                 check=lambda v: v in (True, False, "auto"), valid="true, false or auto")
    max_cache_gb: float = knob(8.0, "the in-memory cache's limit", ge=0.0)
    on_bad_image: str = knob("skip", "an unreadable image: skip (one warning listing them) or error",
                             choices=BAD_IMAGE_POLICIES)
    max_train_images: int | None = knob(None, "a stratified subset of train/ (after the hold-outs)", ge=1)


@schema("data", "synthetic")
@dataclass
class SyntheticOptions(DataOptions):
    """Class-dependent noise images made in memory: tests and smoke runs, no files
    (`cifar_ft.data.synthetic.SyntheticDataModule`)."""

    _target_: str = "cifar_ft.data.synthetic.SyntheticDataModule"
    num_classes: int = knob(10, "classes", ge=2)
    image_size: int = knob(32, "side, px", ge=1)
    train_size: int = knob(2000, "training images (validation is drawn from them)", ge=1)
    test_size: int = knob(500, "test images", ge=0)
    val_size: int | float = knob(400, "images held out of train for validation (count, or fraction < 1)",
                                 check=_count_or_fraction, valid=COUNT_OR_FRACTION)
    noise: float = knob(0.35, "noise std around each class's pattern", ge=0.0)
    data_seed: int = knob(0, "the images' seed (data.seed draws the splits)", ge=0)
