"""Batched augmentation ops on the training device: (B, 3, h, w) in, the same shape out (except
`random_resized_crop`, which resamples straight to the output size). Each draws from `gen`, so a
batch's augmentation is a function of its seed (identical after a resume)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _rand(shape, gen, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def center_crop(x: torch.Tensor, crop_pct: float) -> torch.Tensor:
    if crop_pct >= 1.0:
        return x
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * crop_pct)), max(1, round(w * crop_pct))
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def pad_crop_flip(x: torch.Tensor, pad_fraction: float, gen) -> torch.Tensor:
    """Zero-pad by `pad_fraction`·side, crop back at a random offset, flip half (per image)."""
    b, _, h, w = x.shape
    pad = round(pad_fraction * max(h, w))
    dev = x.device
    off_y = (_rand(b, gen, dev) * (2 * pad + 1)).long().clamp_max(2 * pad)
    off_x = (_rand(b, gen, dev) * (2 * pad + 1)).long().clamp_max(2 * pad)
    flip = _rand(b, gen, dev) < 0.5
    cols = torch.arange(w, device=dev).expand(b, w)
    cols = torch.where(flip[:, None], cols.flip(-1), cols) + off_x[:, None]
    rows = torch.arange(h, device=dev)[None] + off_y[:, None]
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x
    bidx = torch.arange(b, device=dev)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bidx, rows[:, :, None], cols[:, None, :]]  # (B, h, w, 3)
    return out.permute(0, 3, 1, 2)


def _affine_sample(x: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    grid = F.affine_grid(theta.to(x.dtype), [x.shape[0], 3, *size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_shift_flip(x: torch.Tensor, degrees: float, pad_fraction: float, gen) -> torch.Tensor:
    b, dev = x.shape[0], x.device
    ang = (_rand(b, gen, dev) * 2 - 1) * math.radians(degrees)
    shift = (_rand((b, 2), gen, dev) * 2 - 1) * 2 * pad_fraction  # grid units: 2 = full side
    flip = torch.where(_rand(b, gen, dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], -1),
                         torch.stack([sin * flip, cos, shift[:, 1]], -1)], 1)
    return _affine_sample(x, theta, tuple(x.shape[-2:]))


def colour_jitter(x: torch.Tensor, strength: float, gen) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by U(1-s, 1+s) per image; x in [0, 1]."""
    b, dev = x.shape[0], x.device
    factors = 1 + (_rand((3, b, 1, 1, 1), gen, dev) * 2 - 1) * strength
    x = x * factors[0]
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = (x - gray.mean((2, 3), keepdim=True)) * factors[1] + gray.mean((2, 3), keepdim=True)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    return ((x - gray) * factors[2] + gray).clamp(0, 1)


def random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], gen) -> torch.Tensor:
    """Crop area U(scale)·side², aspect log-U(3/4, 4/3), flip half, resized to `size`, in one sample."""
    b, dev = x.shape[0], x.device
    area = scale[0] + (scale[1] - scale[0]) * _rand(b, gen, dev)
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * _rand(b, gen, dev)
    sx = torch.sqrt(area * torch.exp(log_r)).clamp(max=1.0)  # crop width as a fraction of the side
    sy = torch.sqrt(area / torch.exp(log_r)).clamp(max=1.0)
    cx = (1 - sx) * (_rand(b, gen, dev) * 2 - 1)
    cy = (1 - sy) * (_rand(b, gen, dev) * 2 - 1)
    flip = torch.where(_rand(b, gen, dev) < 0.5, -1.0, 1.0)
    zero = torch.zeros_like(sx)
    theta = torch.stack([torch.stack([sx * flip, zero, cx], -1), torch.stack([zero, sy, cy], -1)], 1)
    return _affine_sample(x.float(), theta, (size, size))


def erase_boxes(b: int, h: int, w: int, prob: float, gen, device, scale=(0.02, 0.33),
                ratio=(0.3, 3.3)) -> torch.Tensor:
    """(B, 4) boxes [top, left, height, width] per image, as torchvision's RandomErasing draws them
    (area U(scale) of the image, log-uniform aspect in `ratio`); height 0 where no box is drawn."""
    area = (scale[0] + (scale[1] - scale[0]) * _rand(b, gen, device)) * h * w
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(b, gen, device)
    bh = torch.sqrt(area * torch.exp(log_r)).round().clamp(1, h)
    bw = torch.sqrt(area / torch.exp(log_r)).round().clamp(1, w)
    top = (_rand(b, gen, device) * (h - bh + 1)).floor()
    left = (_rand(b, gen, device) * (w - bw + 1)).floor()
    drawn = _rand(b, gen, device) < prob
    return torch.stack([top, left, bh * drawn, bw], 1).long()


def random_erase(x: torch.Tensor, prob: float, gen) -> torch.Tensor:
    """Each image gets, with probability `prob`, one random box set to 0 (on normalised images: the
    per-channel mean). Batched: one mask for the whole batch, no per-image loop."""
    b, _, h, w = x.shape
    boxes = erase_boxes(b, h, w, prob, gen, x.device)
    rows = torch.arange(h, device=x.device)[None, :, None]
    cols = torch.arange(w, device=x.device)[None, None, :]
    top, left, bh, bw = (boxes[:, i, None, None] for i in range(4))
    inside = (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)
    return x.masked_fill(inside[:, None], 0)
