"""Where the model looks: class-activation maps (Grad-CAM, Selvaraju et al., ICCV 2017) of the
`grad-cam` package (pytorch_grad_cam), for mistakes.png (train, eval) and `predict explain=true`.

The layer explained is found by running the backbone once: for a CNN the last module whose output is
a feature map (B, C, h, w) (EfficientNet's head conv, ResNet's layer4); for a ViT-like model (tokens
(B, prefix + h*w, C)), its last block's first norm, with the reshape of grad-cam's ViT example (prefix
tokens dropped, tokens laid out on their h x w grid). The map is of the predicted class.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from cifar_ft.reports.diagnostics import image_grid

log = logging.getLogger("cifar_ft")


def _token_grid(tokens: int, prefix: int | None) -> tuple[int, int] | None:
    """(prefix tokens, grid side) when `tokens` is the prefix (timm's `num_prefix_tokens`: class,
    register and, under strategy=vpt, prompt tokens) plus a square grid of patches."""
    if prefix is None or tokens <= prefix:
        return None
    side = math.isqrt(tokens - prefix)
    return (prefix, side) if side > 1 and side * side == tokens - prefix else None


def cam_layer(model: nn.Module, size: int) -> tuple[nn.Module, Callable | None]:
    """The backbone module Grad-CAM explains, and the reshape its output needs (None for a CNN)."""
    outputs: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [m.register_forward_hook(lambda mod, _i, out: outputs.append((mod, tuple(out.shape))))
             for m in model.backbone.modules() if m is not model.backbone and not list(m.children())]
    try:
        with torch.no_grad():
            model.backbone(torch.zeros(1, 3, size, size, device=next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    blocks = getattr(model.backbone, "blocks", None)
    tokens = [shape for _, shape in outputs if len(shape) == 3]
    grid = _token_grid(tokens[-1][1], getattr(model.backbone, "num_prefix_tokens", None)) if tokens else None
    last = list(blocks.children())[-1] if blocks is not None else None
    if grid is not None and hasattr(last, "norm1"):  # a ViT: tokens to the end
        return last.norm1, _grid_reshape(*grid)
    maps = [m for m, shape in outputs if len(shape) == 4 and shape[-1] > 1]
    if not maps:
        raise ValueError(f"no layer to explain in {type(model.backbone).__name__}")
    return maps[-1], None


def _grid_reshape(prefix: int, side: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """Tokens (B, prefix + side^2, C) -> a feature map (B, C, side, side), prefix tokens dropped."""

    def reshape(t: torch.Tensor) -> torch.Tensor:
        return t[:, prefix:].reshape(t.shape[0], side, side, t.shape[2]).permute(0, 3, 1, 2)

    return reshape


def activation_maps(model: nn.Module, x: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Grad-CAM maps (B, H, W) in [0, 1] of normalised images `x` for `classes`."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    layer, reshape = cam_layer(model, x.shape[-1])
    # The input requires grad, so the maps exist when no parameter trains (linear probe, LoRA's frozen
    # base; grad-cam only asks for input gradients with compute_input_gradient); a normal copy, not an
    # inference tensor of the data's transform after a test.
    with torch.inference_mode(False), torch.enable_grad():
        x = x.detach().clone().requires_grad_(True)
        with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
            maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return torch.from_numpy(maps)


def overlay(x: torch.Tensor, mean: list[float], std: list[float], maps: torch.Tensor) -> list:
    """RGB uint8 arrays (H, W, 3): each image (un-normalised) with its map as a heat overlay."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    rgb = (x.detach().float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None])
    rgb = rgb.clamp(0, 1).permute(0, 2, 3, 1).numpy()
    return [show_cam_on_image(img, m.numpy(), use_rgb=True, image_weight=0.6) for img, m in zip(rgb, maps)]


def grad_cam_available() -> bool:
    try:
        import pytorch_grad_cam  # noqa: F401
    except ImportError:
        log.warning("grad-cam is not installed: no class-activation maps (pip install -e '.[explain]')")
        return False
    return True


def image_name(dataset, index: int) -> str:
    """An image as a user finds it: `class/file.jpg` for a folder's image, `#index` in the split otherwise."""
    paths = getattr(getattr(dataset, "data", None), "paths", None)
    return "/".join(Path(paths[index]).parts[-2:]) if paths else f"#{index}"


def write_mistakes(model, datamodule, rows: torch.Tensor | None, class_names: list[str], path: Path,
                   count: int = 16) -> Path | None:
    """mistakes.png: the `count` most confidently wrong test images (rows: index, label, prediction,
    confidence, p(label)) with their Grad-CAM map of the predicted class."""
    if rows is None or not grad_cam_available():
        return None
    wrong = rows[rows[:, 1] != rows[:, 2]]
    wrong = wrong[wrong[:, 3].argsort(descending=True)][:count]
    if len(wrong) == 0:
        log.info("mistakes.png: no test image is misclassified")
        return None
    index = wrong[:, 0].long()
    test = datamodule.ordered_loader("test").dataset  # only these images are read
    images = torch.stack([test[int(i)][0] for i in index])
    device = next(model.parameters()).device
    x = datamodule.eval_transform()(images.to(device)).float()
    was_training = model.training
    model.eval()
    maps = activation_maps(model, x, wrong[:, 2].long().tolist())
    model.train(was_training)
    titles = [f"{image_name(test, int(i))} true {class_names[int(t)]}\npred {class_names[int(p)]} ({c:.2f})"
              for i, t, p, c in zip(index, wrong[:, 1], wrong[:, 2], wrong[:, 3].tolist())]
    fig = image_grid(overlay(x, model.options.inputs.mean, model.options.inputs.std, maps), titles,
                     f"The {len(wrong)} most confident mistakes of {len(rows)} test images (Grad-CAM of the "
                     "predicted class)")
    fig.savefig(path, dpi=100)
    return path


def write_explanations(model, images: torch.Tensor, transform, paths: list[Path], probs: torch.Tensor,
                       class_names: list[str], out_dir: Path, device: torch.device, batch_size: int = 32) -> list[Path]:
    """`predict explain=true`: explain/NNNN_<image name>.png per input image, its Grad-CAM overlay of the
    top-1 class (at the model's input size), the class and probability in the file's PNG text."""
    from PIL import Image, PngImagePlugin

    if not grad_cam_available():
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    model.eval().to(device)
    top = probs.argmax(1)
    written = []
    for start in range(0, len(images), batch_size):
        x = transform(images[start:start + batch_size].to(device)).float()
        classes = top[start:start + batch_size].tolist()
        maps = activation_maps(model, x, classes)
        for k, img in enumerate(overlay(x, model.options.inputs.mean, model.options.inputs.std, maps)):
            i = start + k
            info = PngImagePlugin.PngInfo()
            info.add_text("prediction", f"{class_names[classes[k]]} {float(probs[i, classes[k]]):.4f}")
            path = out_dir / f"{i:04d}_{paths[i].stem}.png"
            Image.fromarray(img).save(path, pnginfo=info)
            written.append(path)
    return written
