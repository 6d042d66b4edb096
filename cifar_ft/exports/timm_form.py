"""Taking a fine-tuned model out of the framework, as the plain timm model it is.

Our checkpoint holds `backbone.*` (a timm model built without classifier, shaped by the fine-tuning
strategy) and `head.*`; `to_timm` folds the strategy's adapters into the weights, rebuilds the timm
architecture with `num_classes` outputs and puts our head in its classifier slot, so the exported
files use timm's own parameter names and need nothing of cifar_ft to run. A strategy that changes the
architecture itself (`vpt`) has no timm form: ONNX and torch.export then trace backbone + head as they are.

`ExportInfo` is what every exported folder records besides the weights; `write_timm` writes timm's own
Hugging Face layout (the `timm` format, and the `base/` of a peft folder).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from torch import nn

from cifar_ft.backbones.timm_models import architecture_args
from cifar_ft.errors import ConfigError
from cifar_ft.models.calibration import fold_into_head
from cifar_ft.models.classifier import ImageClassifier

log = logging.getLogger("cifar_ft")


@dataclass
class ExportInfo:
    """What the exported files record besides the weights."""

    class_names: list[str]
    input_size: int
    mean: list[float]
    std: list[float]
    eval_crop_pct: float
    model_card: str
    temperature: float = 1.0  # folded into the exported head: its softmax is the calibrated probabilities


def to_timm(model: ImageClassifier, backbone: nn.Module | None = None) -> nn.Module:
    """The timm model (classifier included, eval mode) with exactly our head (the model's temperature
    folded in: logits z / T) and the strategy's merged backbone weights (or those of `backbone`, a
    plain module of the same architecture)."""
    name = model.options.backbone.name
    backbone = model.strategy.merged(model.backbone) if backbone is None else backbone
    net = timm.create_model(name, pretrained=False, num_classes=int(model.hparams.num_classes),
                            **architecture_args(name, model.options.inputs.size))
    slot = net.pretrained_cfg.get("classifier")
    # a distilled DeiT has two heads (class and distillation token) whose eval outputs are averaged: our one
    # head on the averaged tokens equals that head in both slots (a linear map of the mean is the mean of maps)
    slots = [slot] if isinstance(slot, str) else list(slot) if isinstance(slot, (list, tuple)) else []
    if not slots or not all(isinstance(s, str) for s in slots):
        raise ConfigError(f"model.backbone={name!r} has classifier slots {slot!r}; export cannot place a head")
    state = dict(backbone.state_dict())
    weight, bias = fold_into_head(model.head.weight, model.head.bias, float(model.temperature))
    for name in slots:
        state.update({f"{name}.weight": weight, f"{name}.bias": bias})
    net.load_state_dict(state, strict=True)  # every tensor, by name: a mismatch fails here
    return net.eval()


class Traced(nn.Module):
    """Backbone + head as trained, for formats that trace the graph (a strategy without a timm form)."""

    def __init__(self, model: ImageClassifier) -> None:
        super().__init__()
        self.backbone, self.head = model.backbone, nn.Linear(model.head.in_features, model.head.out_features)
        weight, bias = fold_into_head(model.head.weight, model.head.bias, float(model.temperature))
        with torch.no_grad():
            self.head.weight.copy_(weight)
            self.head.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def traceable(model: ImageClassifier) -> nn.Module:
    """The plain timm model where the strategy has a merged form, else backbone + head as trained."""
    try:
        merged = model.strategy.merged(model.backbone)
    except ConfigError:  # the strategy changes the architecture (vpt)
        return Traced(model).eval()
    return to_timm(model, merged)


def export_timm(model: ImageClassifier, out: Path, info: ExportInfo) -> list[Path]:
    return write_timm(to_timm(model), out, info)


def write_timm(net: nn.Module, out: Path, info: ExportInfo) -> list[Path]:
    """timm's `save_for_hf` layout: model.safetensors, config.json (architecture, num_classes, label
    names, input size, mean/std), plus the model card README.md. `timm.create_model("local-dir:OUT",
    pretrained=True)` loads it; the folder is ready for the Hugging Face hub."""
    from timm.models import save_for_hf

    data_config = {"input_size": (3, info.input_size, info.input_size), "mean": tuple(info.mean),
                   "std": tuple(info.std), "crop_pct": info.eval_crop_pct, "interpolation": "bilinear"}
    config = {"label_names": list(info.class_names)}
    if info.temperature != 1.0:  # a record: it is in the weights already
        config["cifar_ft_temperature_folded"] = info.temperature
    save_for_hf(net, str(out), model_config=config, safe_serialization=True,
                data_config=data_config)
    (out / "README.md").write_text(info.model_card)
    return [out / "model.safetensors", out / "config.json", out / "README.md"]
