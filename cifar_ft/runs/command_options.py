"""The options of `python -m cifar_ft.eval`, `predict` and `export`: the top-level keys of conf/eval.yaml,
predict.yaml and export.yaml (the nodes they share with train have their own schemas). Light: the
registries of choices are looked up when a value is checked."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cifar_ft.data.folder_source import BAD_IMAGE_POLICIES
from cifar_ft.runs.config import CALIBRATIONS, tta_names
from cifar_ft.schema import knob, schema

CKPT_HELP = "a checkpoint of a training run (outputs/train/<run>/checkpoints/best-epochNNN.ckpt or last.ckpt)"
TRUST_HELP = "true: also load files whose pickle runs code (only files you trust)"


def _tta_or_stored() -> list:
    return [*tta_names(), None]


def _calibration_or_stored() -> list:
    return [*CALIBRATIONS, None]


def _device_ok(value: object) -> bool:
    from cifar_ft.runs.devices import device_exists  # torch: only when a device is checked

    return device_exists(value)


def _formats() -> list[str]:
    from cifar_ft.exports.formats import FORMATS  # timm and the model: only when a format is checked

    return list(FORMATS)


@dataclass
class EvalModelOptions:
    """How eval prepares images: the checkpoint's input size, mean and std (filled in from it)."""

    input_size: int = knob("???", "from the checkpoint", ge=16)
    mean: list[float] = knob("???", "from the checkpoint", length=3)
    std: list[float] = knob("???", "from the checkpoint", length=3, gt=0.0)
    batch_size: int = knob(256, "test images per batch", ge=1)
    test_input_size: int | None = knob(None, "FixRes: test at this size (px); null: the checkpoint's", ge=16)


@dataclass
class CheckpointCommandOptions:
    """What every command that reads a training run's checkpoint takes."""

    task_name: str = knob("???", "names the run's folder: outputs/<task_name>/<time>")
    ckpt_path: str = knob("???", CKPT_HELP)
    calibrate: str | None = knob(None, "null: the checkpoint's temperature, if any; none: off; temperature: "
                                       "required", choices=_calibration_or_stored)
    trust_checkpoint: bool = knob(False, TRUST_HELP)
    paths: Any = None


@dataclass
class TestCommandOptions(CheckpointCommandOptions):
    """eval and predict: the checkpoint's predictions, with its own test-time augmentation by default."""

    tta: str | None = knob(None, "null: the checkpoint's own; none | flip", choices=_tta_or_stored)


@schema("run", "eval")
@dataclass
class EvalOptions(TestCommandOptions):
    """`python -m cifar_ft.eval`: a checkpoint tested on its run's held-out images, or on data=... ."""

    task_name: str = knob("eval", "names the run's folder: outputs/<task_name>/<time>")
    seed: int = knob(42, "the data's seed where data=... is given", ge=0, lt=2**32)
    allow_train_overlap: bool = knob(False, "true: test on data that holds the run's training images")
    model: EvalModelOptions = dataclasses.field(default_factory=lambda: EvalModelOptions())
    data: Any = None
    robustness: Any = None
    trainer: Any = None


@schema("run", "predict")
@dataclass
class PredictOptions(TestCommandOptions):
    """`python -m cifar_ft.predict`: top-k classes of new images, from a checkpoint."""

    task_name: str = knob("predict", "names the run's folder: outputs/<task_name>/<time>")
    inputs: Any = knob("???", "image files and/or folders (searched recursively): one path or a list",
                       check=lambda v: bool(v) and isinstance(v, (str, list, tuple)),
                       valid="image files and/or folders, e.g. inputs=[cat.jpg,photos/]")
    top_k: int = knob(5, "classes listed per image", ge=1)
    batch_size: int = knob(64, "images per batch", ge=1)
    device: str = knob("auto", "auto: cuda if available, else cpu", check=_device_ok,
                       valid="auto, cpu, or cuda / cuda:N naming a GPU of this machine")
    explain: bool = knob(False, "true: explain/NNNN_<image>.png, a Grad-CAM overlay of the top-1 class")
    on_bad_image: str = knob("skip", "an unreadable image: skip (listed in a warning and the outputs) or error",
                             choices=BAD_IMAGE_POLICIES)


@schema("run", "export")
@dataclass
class ExportOptions(CheckpointCommandOptions):
    """`python -m cifar_ft.export`: a checkpoint as a plain timm model, ONNX or torch.export program."""

    task_name: str = knob("export", "names the run's folder: outputs/<task_name>/<time>")
    format: str = knob("timm", "timm | onnx | torch_export", choices=_formats)
    out: str | None = knob(None, "null: <run dir>/<format>; written whole (temporary folder + rename)")
    calibrate: str | None = knob(None, "null: fold the checkpoint's temperature (if any) into the head; none: do not",
                                 choices=_calibration_or_stored)
    overwrite: bool = knob(False, "true: replace a non-empty out= folder")
