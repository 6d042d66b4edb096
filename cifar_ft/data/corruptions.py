"""The 15 CIFAR-10-C corruptions x 5 severities (Hendrycks & Dietterich, ICLR 2019), batched in torch.

Each `CORRUPTIONS[name](x, severity, draw)` takes uint8 images (B, 3, H, W) on any device and returns
uint8 images of the same shape: the formula and the CIFAR parameters of the reference
`make_cifar_c.py` (github.com/hendrycks/robustness), applied as it applies them (float in [0, 1],
clipped, times 255, truncated to uint8 like its `np.uint8(...)`). Random draws come from `draw`
(`Draws`), in the reference's order and memory layout (H, W, C), so one seed gives one result and a
test can feed the reference the very same numbers. Differences from the reference, on purpose:
- `motion_blur` and the blur in `snow` call ImageMagick through Wand there; here ImageMagick's own
  kernel and offsets (MagickCore effect.c, as `imagecorruptions` reimplements them), so no system
  library is needed; the snow layer is rounded to 8 bits as the PNG round trip does.
- `frost` reads the reference's frost pictures already scaled by its 0.2 (`cifar_ft/data/frost/`).
- `jpeg_compression` and `pixelate` are PIL itself (libjpeg, PIL's box filter), on the CPU.
The parameters are those of 32 x 32 CIFAR images; other sizes get the same operations.
"""
from __future__ import annotations

import functools
import io
from collections.abc import Callable
from importlib import resources
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from cifar_ft.data import corruption_ops as ops
from cifar_ft.data.corruption_warp import elastic


class Draws(Protocol):
    """Random numbers for a corruption, as numpy's legacy global functions give them (same arguments)."""

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor: ...

    def normal(self, loc: float, scale: float, shape: tuple[int, ...]) -> torch.Tensor: ...

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor: ...

    def poisson(self, lam: torch.Tensor) -> torch.Tensor: ...


class TorchDraws:
    """`Draws` from one torch.Generator on the images' device (float64)."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen, self.device = gen, gen.device

    def uniform(self, low: float, high: float, shape: tuple[int, ...]) -> torch.Tensor:
        return low + (high - low) * torch.rand(shape, generator=self.gen, dtype=torch.float64, device=self.device)

    def normal(self, loc: float, scale: float, shape: tuple[int, ...]) -> torch.Tensor:
        return loc + scale * torch.randn(shape, generator=self.gen, dtype=torch.float64, device=self.device)

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randint(low, high, shape, generator=self.gen, device=self.device)

    def poisson(self, lam: torch.Tensor) -> torch.Tensor:
        return torch.poisson(lam.double(), generator=self.gen)


def _float(x: torch.Tensor) -> torch.Tensor:
    return x.double() / 255.0


def _uint8(x01: torch.Tensor) -> torch.Tensor:
    """np.uint8(np.clip(x, 0, 1) * 255): clipped, truncated."""
    return (x01.clamp(0, 1) * 255).floor().to(torch.uint8)


def _hwc(noise: torch.Tensor) -> torch.Tensor:
    return noise.permute(0, 3, 1, 2).to(torch.float64)


def gaussian_noise(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [0.04, 0.06, .08, .09, .10][severity - 1]
    b, _, h, w = x.shape
    return _uint8(_float(x) + _hwc(draw.normal(0.0, c, (b, h, w, 3))))


def shot_noise(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [500, 250, 100, 75, 50][severity - 1]
    return _uint8(_hwc(draw.poisson(_float(x).permute(0, 2, 3, 1) * c)) / c)


def impulse_noise(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    """skimage's random_noise(mode='s&p', amount=c): each value flips with probability c, to 1 or 0
    with probability 1/2 each (skimage draws two boolean masks, here two uniform arrays)."""
    c = [.01, .02, .03, .05, .07][severity - 1]
    b, _, h, w = x.shape
    flipped = _hwc(draw.uniform(0, 1, (b, h, w, 3))) < c
    salted = _hwc(draw.uniform(0, 1, (b, h, w, 3))) < 0.5
    y = _float(x)
    y = torch.where(flipped & salted, torch.ones_like(y), y)
    return _uint8(torch.where(flipped & ~salted, torch.zeros_like(y), y))


def defocus_blur(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][severity - 1]
    return _uint8(ops.filter2d_reflect101(_float(x), ops.disk(c[0], c[1])))


def glass_blur(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    """Blur, move pixels locally, blur again. The reference's "swap" `x[h, w], x[h', w'] = x[h', w'],
    x[h, w]` assigns through numpy views, so it copies the neighbour (h', w') onto (h, w) and leaves
    (h', w') as it was; CIFAR-10-C was made that way, and so is this (in the reference's sequential
    order: a later copy sees the earlier ones)."""
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][severity - 1]
    b, ch, h, w = x.shape
    y = (ops.gaussian_filter(_float(x), sigma) * 255).floor().reshape(b, ch, h * w)  # np.uint8(... * 255)
    batch = torch.arange(b, device=x.device)
    for _ in range(iterations):
        for row in range(h - delta, delta, -1):
            for col in range(w - delta, delta, -1):
                d = draw.randint(-delta, delta, (b, 2))  # (dx, dy) per image
                here = torch.full((b,), row * w + col, device=x.device)
                there = (row + d[:, 1]) * w + (col + d[:, 0])
                y[batch, :, here] = y[batch, :, there]
    return _uint8(ops.gaussian_filter(y.reshape(b, ch, h, w) / 255.0, sigma))


def motion_blur(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][severity - 1]
    angles = draw.uniform(-45, 45, (x.shape[0],))
    # ImageMagick rounds to the nearest 8-bit level when it writes the blurred image
    return ops.motion_blur(x.double(), radius, sigma, angles).round().clamp(0, 255).to(torch.uint8)


def zoom_blur(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    stop = [1.06, 1.11, 1.16, 1.21, 1.26][severity - 1]
    zooms = np.arange(1, stop, 0.01)
    y = _float(x).float()  # the reference works in float32 here
    out = sum(ops.clipped_zoom(y, float(z)) for z in zooms)
    return _uint8((y + out) / (len(zooms) + 1))


def snow(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [(0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
         (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)][severity - 1]
    b, _, h, w = x.shape
    y = _float(x).float()
    layer = ops.clipped_zoom(draw.normal(c[0], c[1], (b, h, w))[:, None], c[2])
    layer = torch.where(layer < c[3], torch.zeros_like(layer), layer)
    layer = (layer.clamp(0, 1) * 255).floor()  # the 8-bit 'L' image the reference blurs
    layer = ops.motion_blur(layer, c[4], c[5], draw.uniform(-135, -45, (b,))).round().clamp(0, 255) / 255
    gray = (0.299 * y[:, 0] + 0.587 * y[:, 1] + 0.114 * y[:, 2])[:, None]  # cv2.COLOR_RGB2GRAY
    y = c[6] * y + (1 - c[6]) * torch.maximum(y, gray * 1.5 + 0.5)
    return _uint8(y + layer + layer.flip(-1, -2))


@functools.cache
def _frost_images() -> tuple[torch.Tensor, ...]:
    folder = resources.files("cifar_ft.data") / "frost"
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.png", "frost5.png"]  # the reference's randint(5)
    return tuple(torch.from_numpy(np.array(Image.open(io.BytesIO((folder / n).read_bytes())).convert("RGB")))
                 for n in names)


def _large_enough(pic: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The picture (H', W', 3), scaled up (bilinear) where an image is larger than it (not for CIFAR)."""
    scale = max((h + 1) / pic.shape[0], (w + 1) / pic.shape[1])
    if scale <= 1:
        return pic
    size = (int(pic.shape[0] * scale) + 1, int(pic.shape[1] * scale) + 1)
    up = torch.nn.functional.interpolate(pic.permute(2, 0, 1)[None].float(), size=size, mode="bilinear")
    return up[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)


def frost(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][severity - 1]
    b, _, h, w = x.shape
    pictures, layers = _frost_images(), []
    for _ in range(b):  # per image, in the reference's order: which picture, then where
        pic = _large_enough(pictures[int(draw.randint(0, 5, (1,)))], h, w)
        top, left = int(draw.randint(0, pic.shape[0] - h, (1,))), int(draw.randint(0, pic.shape[1] - w, (1,)))
        layers.append(pic[top:top + h, left:left + w])
    layer = torch.stack(layers).permute(0, 3, 1, 2).to(x.device, torch.float64)
    return (c[0] * x.double() + c[1] * layer).clamp(0, 255).floor().to(torch.uint8)


def fog(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [(.2, 3), (.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][severity - 1]
    b, _, h, w = x.shape
    size = 1 << (max(h, w) - 1).bit_length()  # the reference's 32 for CIFAR: a power of two >= the side
    y = _float(x)
    peak = y.amax((1, 2, 3), keepdim=True)
    y = y + c[0] * ops.plasma_fractal(b, size, c[1], draw.uniform, x.device)[:, None, :h, :w]
    return _uint8(y * peak / (peak + c[0]))


def brightness(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [.05, .1, .15, .2, .3][severity - 1]
    hsv = ops.rgb_to_hsv(_float(x))
    hsv[:, 2] = (hsv[:, 2] + c).clamp(0, 1)
    return _uint8(ops.hsv_to_rgb(hsv))


def contrast(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [.75, .5, .4, .3, 0.15][severity - 1]
    y = _float(x)
    means = y.mean((2, 3), keepdim=True)
    return _uint8((y - means) * c + means)


def _pil_each(x: torch.Tensor, fn: Callable[[Image.Image], Image.Image]) -> torch.Tensor:
    arrays = x.permute(0, 2, 3, 1).cpu().numpy()
    out = np.stack([np.asarray(fn(Image.fromarray(a)).convert("RGB")) for a in arrays])
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(x.device)


def jpeg_compression(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    quality = [80, 65, 58, 50, 40][severity - 1]

    def jpeg(img: Image.Image) -> Image.Image:
        buffer = io.BytesIO()
        img.save(buffer, "JPEG", quality=quality)
        return Image.open(buffer)

    return _pil_each(x, jpeg)


def pixelate(x: torch.Tensor, severity: int, draw: Draws) -> torch.Tensor:
    c = [0.95, 0.9, 0.85, 0.75, 0.65][severity - 1]
    h, w = x.shape[-2:]
    return _pil_each(x, lambda img: img.resize((int(w * c), int(h * c)), Image.BOX).resize((w, h), Image.BOX))


# robustness.corruptions -> the corruption, in the reference's order (CIFAR-10-C's 15 of the benchmark)
CORRUPTIONS: dict[str, Callable[[torch.Tensor, int, Draws], torch.Tensor]] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur, "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur,
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "contrast": contrast,
    "elastic_transform": elastic, "pixelate": pixelate, "jpeg_compression": jpeg_compression,
}
SEVERITIES = (1, 2, 3, 4, 5)
