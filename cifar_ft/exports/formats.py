"""The export formats (`format=<name>`): plain timm (Hugging Face layout, adapters merged), ONNX,
torch.export, and a peft adapter folder (strategy=lora|dora). Each is a function `(classifier, out dir,
ExportInfo) -> list of written files`.

Add a format: such a function and an entry in `FORMATS`.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cifar_ft.errors import ConfigError
from cifar_ft.exports.peft import export_adapter
from cifar_ft.exports.timm_form import ExportInfo, export_timm, traceable
from cifar_ft.models.classifier import ImageClassifier

log = logging.getLogger("cifar_ft")


def _example(info: ExportInfo, batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, info.input_size, info.input_size)


def _batch_dim() -> dict:
    return {0: torch.export.Dim("batch", min=1, max=65536)}


def export_onnx(model: ImageClassifier, out: Path, info: ExportInfo) -> list[Path]:
    """model.onnx (input `images`, output `logits`, dynamic batch), checked against torch with
    onnxruntime when it is installed (pip install -e '.[onnx]')."""
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ConfigError("format=onnx needs onnx and onnxscript: pip install -e '.[onnx]'") from err
    net, path = traceable(model), out / "model.onnx"
    for name in ("onnx_ir", "onnxscript"):  # their optimiser passes log a dozen INFO lines per export
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.onnx.export(net, (_example(info),), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_shapes=(_batch_dim(),), dynamo=True, external_data=False, verbose=False)
    (out / "README.md").write_text(info.model_card)
    _check_onnx(net, path, info)
    return [path, out / "README.md"]


def _check_onnx(net: nn.Module, path: Path, info: ExportInfo) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime not installed: %s not checked (pip install -e '.[onnx]')", path)
        return
    x = _example(info, batch=3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        diff = (got - net(x)).abs().max().item()
    if diff > 1e-3:
        raise RuntimeError(f"{path}: onnxruntime differs from torch by {diff:.2e} (max abs logit)")
    log.info("onnxruntime check: max abs logit difference %.2e on a batch of 3", diff)


def export_torch(model: ImageClassifier, out: Path, info: ExportInfo) -> list[Path]:
    """model.pt2 from `torch.export` (dynamic batch): `torch.export.load(path).module()(images)`."""
    net, path = traceable(model), out / "model.pt2"
    program = torch.export.export(net, (_example(info),), dynamic_shapes=(_batch_dim(),))
    torch.export.save(program, str(path))
    (out / "README.md").write_text(info.model_card)
    return [path, out / "README.md"]


# format= -> exporter
FORMATS: dict[str, Callable[[ImageClassifier, Path, ExportInfo], list[Path]]] = {
    "timm": export_timm,
    "onnx": export_onnx,
    "torch_export": export_torch,
    "peft": export_adapter,
}
