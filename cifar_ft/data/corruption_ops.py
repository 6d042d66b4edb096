"""Batched torch building blocks of the CIFAR-10-C corruptions (data/corruptions.py), each matching the
library call of the reference code (Hendrycks & Dietterich, ICLR 2019, `make_cifar_c.py`) it stands in
for: scipy/skimage Gaussian filters, OpenCV's filter2D and warpAffine, scipy's zoom and
map_coordinates, skimage's HSV conversion, ImageMagick's motion blur. Images are float (B, C, H, W).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def pad_index(n: int, r: int, mode: str, device: torch.device) -> torch.Tensor:
    """Source index of each of n + 2r padded positions: `nearest` (edge repeated), `reflect` (scipy's
    half-sample symmetric: d c b a | a b c d), `reflect101` (OpenCV's default, torch's `reflect`)."""
    i = torch.arange(-r, n + r, device=device)
    if mode == "nearest":
        return i.clamp(0, n - 1)
    period = 2 * n if mode == "reflect" else 2 * n - 2
    i = i.remainder(period)
    return torch.where(i < n, i, period - i - (1 if mode == "reflect" else 0))


def pad2d(x: torch.Tensor, r: int, mode: str, r_cols: int | None = None) -> torch.Tensor:
    """Pad H by r and W by r_cols (default r) on both sides."""
    h, w = x.shape[-2:]
    rows, cols = pad_index(h, r, mode, x.device), pad_index(w, r if r_cols is None else r_cols, mode, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def gaussian_filter(x: torch.Tensor, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> torch.Tensor:
    """scipy.ndimage.gaussian_filter over H and W (skimage.filters.gaussian with channel_axis=-1)."""
    radius = int(truncate * sigma + 0.5)
    if sigma <= 0 or radius == 0:
        return x
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 / sigma**2 * k**2)
    k = (k / k.sum()).to(x)
    b, c, h, w = x.shape
    flat = pad2d(x, radius, mode).reshape(b * c, 1, h + 2 * radius, w + 2 * radius)
    flat = F.conv2d(flat, k.view(1, 1, -1, 1))  # along H, then along W (scipy's axis order)
    flat = F.conv2d(flat, k.view(1, 1, 1, -1))
    return flat.reshape(b, c, h, w)


def filter2d_reflect101(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """cv2.filter2D(x, -1, kernel) (correlation, centred anchor, BORDER_REFLECT_101), per channel."""
    rh, rw = kernel.shape[0] // 2, kernel.shape[1] // 2
    b, c, h, w = x.shape
    flat = pad2d(x, rh, "reflect101", rw).reshape(b * c, 1, h + 2 * rh, w + 2 * rw)
    return F.conv2d(flat, kernel.to(x)[None, None]).reshape(b, c, h, w)


def disk(radius: float, alias_blur: float) -> torch.Tensor:
    """The reference's anti-aliased disk kernel: a 17 x 17 (radius <= 8) indicator of x^2 + y^2 <= r^2,
    normalised, then cv2.GaussianBlur with ksize 3 and sigma `alias_blur` (BORDER_REFLECT_101)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    aliased = ((axis[None] ** 2 + axis[:, None] ** 2) <= radius**2).float()  # float32, as the reference
    aliased /= aliased.sum()
    g = torch.exp(-((torch.arange(ksize, dtype=torch.float64) - ksize // 2) ** 2) / (2 * alias_blur**2))
    g = (g / g.sum()).float()
    blurred = filter2d_reflect101(filter2d_reflect101(aliased[None, None], g.view(1, -1)), g.view(-1, 1))[0, 0]
    # only the centre is non-zero (r <= 1.5 in a 17 x 17 window): the same filter, 10x less work
    keep = int((blurred != 0).any(0).nonzero().min())
    return blurred[keep:blurred.shape[0] - keep, keep:blurred.shape[1] - keep].double()


def zoom_matrix(n: int, zoom: float, device: torch.device) -> torch.Tensor:
    """(n, n) linear map of the reference's `clipped_zoom` along one axis: crop the centre ceil(n / zoom)
    samples, scipy.ndimage.zoom(order=1) them by `zoom` (grid_mode=False), keep the centre n."""
    ch = int(math.ceil(n / zoom))
    top = (n - ch) // 2
    out = int(round(ch * zoom))
    trim = (out - n) // 2
    pos = torch.arange(trim, trim + n, dtype=torch.float64) * ((ch - 1) / (out - 1) if out > 1 else 0.0)
    lo = pos.floor().long().clamp(0, ch - 1)
    hi = (lo + 1).clamp(max=ch - 1)
    frac = pos - lo
    m = torch.zeros(n, n, dtype=torch.float64)
    rows = torch.arange(n)
    m.index_put_((rows, top + lo), 1 - frac, accumulate=True)
    m.index_put_((rows, top + hi), frac, accumulate=True)
    return m.to(device)


def clipped_zoom(x: torch.Tensor, zoom: float) -> torch.Tensor:
    """The reference's `clipped_zoom` of square images (B, C, n, n) (crop, bilinear zoom, centre crop)."""
    m = zoom_matrix(x.shape[-1], zoom, x.device).to(x.dtype)
    return m @ x @ m.T


def motion_blur(x: torch.Tensor, radius: int, sigma: float, angles_deg: torch.Tensor) -> torch.Tensor:
    """ImageMagick's MotionBlurImage (what the reference calls through Wand), per image angle: a one-sided
    Gaussian of width 2 * radius + 1 along the angle, edge pixels repeated; the offsets and weights of
    MagickCore's effect.c, as reimplemented by `imagecorruptions` (Michaelis et al., 2019)."""
    width = 2 * radius + 1
    k = np.exp(-(np.arange(width) ** 2) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)
    k = k / k.sum()
    b, c, h, w = x.shape
    rad = torch.deg2rad(angles_deg.double().cpu())
    point_y, point_x = width * torch.sin(rad), width * torch.cos(rad)
    hypot = torch.hypot(point_y, point_x)
    rows, cols = torch.arange(h), torch.arange(w)
    out = torch.zeros_like(x)
    for i in range(width):
        dy = -torch.ceil(i * point_y / hypot - 0.5).long()
        dx = -torch.ceil(i * point_x / hypot - 0.5).long()
        src_r = (rows[None] - dy[:, None]).clamp(0, h - 1).to(x.device)  # (B, H)
        src_c = (cols[None] - dx[:, None]).clamp(0, w - 1).to(x.device)
        shifted = x.gather(2, src_r[:, None, :, None].expand(b, c, h, w))
        shifted = shifted.gather(3, src_c[:, None, None, :].expand(b, c, h, w))
        out += float(k[i]) * shifted
    return out


def plasma_fractal(batch: int, mapsize: int, wibbledecay: float, uniform: Callable, device: torch.device
                   ) -> torch.Tensor:
    """The reference's diamond-square height map (B, mapsize, mapsize) in [0, 1], float64; `uniform(low,
    high, shape)` draws its noise, in the reference's order."""
    m = torch.zeros(batch, mapsize, mapsize, dtype=torch.float64, device=device)
    step, wibble = mapsize, 100.0

    def wibbled(a: torch.Tensor) -> torch.Tensor:
        return a / 4 + wibble * uniform(-wibble, wibble, tuple(a.shape)).to(device)

    while step >= 2:
        half = step // 2
        corner = m[:, 0:mapsize:step, 0:mapsize:step]
        square = corner + corner.roll(-1, 1)
        square = square + square.roll(-1, 2)
        m[:, half:mapsize:step, half:mapsize:step] = wibbled(square)
        dr = m[:, half:mapsize:step, half:mapsize:step]
        ul = m[:, 0:mapsize:step, 0:mapsize:step]
        m[:, 0:mapsize:step, half:mapsize:step] = wibbled(dr + dr.roll(1, 1) + ul + ul.roll(-1, 2))
        m[:, half:mapsize:step, 0:mapsize:step] = wibbled(dr + dr.roll(1, 2) + ul + ul.roll(-1, 1))
        step //= 2
        wibble /= wibbledecay
    m = m - m.amin((1, 2), keepdim=True)
    return m / m.amax((1, 2), keepdim=True)


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.rgb2hsv of (B, 3, H, W) in [0, 1]."""
    r, g, b = x.unbind(1)
    v, _ = x.max(1)
    delta = v - x.min(1).values
    s = torch.where(v > 0, delta / v.clamp_min(1e-30), torch.zeros_like(v))
    d = delta.clamp_min(1e-30)
    h = torch.where(v == r, (g - b) / d, torch.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d))
    h = torch.where(delta > 0, (h / 6).remainder(1.0), torch.zeros_like(h))
    return torch.stack([h, s, v], 1)


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """skimage.color.hsv2rgb of (B, 3, H, W)."""
    h, s, v = x.unbind(1)
    i = torch.floor(h * 6)
    f = h * 6 - i
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    i = i.long().remainder(6)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = torch.zeros_like(x)
    for k, rgb in enumerate(choices):
        out = torch.where((i == k)[:, None], torch.stack(rgb, 1), out)
    return out


def bilinear_sample(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, pad: int, mode: str) -> torch.Tensor:
    """x (B, C, H, W) at float coordinates (B, H, W), linearly interpolated, outside values from `mode`
    padding of `pad` pixels (coordinates must stay within it)."""
    b, c, h, w = x.shape
    padded = pad2d(x, pad, mode)
    rows, cols = rows + pad, cols + pad
    r0, c0 = rows.floor().long(), cols.floor().long()
    fr, fc = (rows - r0).to(x.dtype)[:, None], (cols - c0).to(x.dtype)[:, None]
    width = w + 2 * pad
    flat = padded.reshape(b, c, -1)

    def at(r: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        idx = (r.clamp(0, h + 2 * pad - 1) * width + col.clamp(0, width - 1)).reshape(b, 1, -1).expand(b, c, -1)
        return flat.gather(2, idx).reshape(b, c, h, w)

    top = at(r0, c0) * (1 - fc) + at(r0, c0 + 1) * fc
    bottom = at(r0 + 1, c0) * (1 - fc) + at(r0 + 1, c0 + 1) * fc
    return top * (1 - fr) + bottom * fr
