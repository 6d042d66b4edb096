"""Batched image transforms that run on the training device, on uint8 batches (B, 3, h, w).

Geometry (pad-crop, flip, rotation, random-resized-crop) and colour jitter act at the stored
resolution (32 px for CIFAR), where they are cheap; normalisation is applied there too (it is
per-channel affine, so it commutes with bilinear resizing, whose weights sum to 1). The single pass
at the backbone's input size is the final resize, written directly in the output dtype.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from cifar_ft.errors import ConfigError

PRESETS = ("none", "basic", "jitter", "rrc", "randaugment", "trivialaugment")
# Presets whose per-image ops (torchvision v2, on uint8) run in the DataLoader, before batching.
SAMPLE_PRESETS = ("randaugment", "trivialaugment")


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise ConfigError(f"data.augment={preset!r} is not valid; valid: {', '.join(PRESETS)}")
    return preset


def sample_transform(preset: str):
    """Per-image uint8 transform for the DataLoader (None for fully batched presets)."""
    from torchvision.transforms import v2

    if preset == "randaugment":
        return v2.RandAugment(num_ops=2, magnitude=9)
    if preset == "trivialaugment":
        return v2.TrivialAugmentWide()
    return None


class BatchTransform:
    """uint8 (B,3,h,w) -> normalised float (B,3,S,S) at the backbone's input size S."""

    def __init__(self, input_size: int, mean: list[float], std: list[float], train: bool,
                 preset: str = "basic", pad_fraction: float = 0.125, color_jitter: float = 0.4,
                 rotation_deg: float = 15.0, rrc_scale: tuple[float, float] = (0.35, 1.0),
                 eval_crop_pct: float = 1.0, out_dtype: torch.dtype = torch.float32,
                 reuse_buffers: bool = False) -> None:
        self.size, self.train, self.preset = int(input_size), train, check_preset(preset)
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.pad_fraction, self.color_jitter, self.rotation_deg = pad_fraction, color_jitter, rotation_deg
        self.rrc_scale, self.eval_crop_pct, self.out_dtype = tuple(rrc_scale), eval_crop_pct, out_dtype
        self.reuse_buffers, self._ring = reuse_buffers, {}

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if not self.train or self.preset == "none":
            return self._resize(self._normalise(_center_crop(x, self.eval_crop_pct)))
        if self.preset == "rrc":
            return _random_resized_crop(self._normalise(x), self.size, self.rrc_scale, gen
                                        ).to(self.out_dtype)
        if self.preset == "jitter":
            xf = _rotate_shift_flip(x.float(), self.rotation_deg, self.pad_fraction, gen)
            xf = _colour_jitter(xf / 255.0, self.color_jitter, gen) * 255.0
            return self._resize(self._normalise(xf))
        return self._resize(self._normalise(_pad_crop_flip(x, self.pad_fraction, gen)))

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        # (x/255 - mean)/std as one multiply-add; padding zeros (black) normalise like black pixels.
        scale = (1.0 / (255.0 * self.std)).to(x.device)
        shift = (-self.mean / self.std).to(x.device)
        dtype = self.out_dtype if x.is_cuda else torch.float32
        return torch.addcmul(shift.to(dtype), x.to(dtype), scale.to(dtype))

    def _resize(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        if h == self.size and w == self.size:
            return x.to(self.out_dtype)
        if h > self.size or w > self.size:  # downscaling: antialiased bilinear
            out = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                antialias=True)
            return out.to(self.out_dtype)
        # Upscaling: bilinear is separable, so it is two small matrix products, rows then columns
        # (exactly F.interpolate's weights), written once into a reused output buffer. Fresh 224 px
        # float batches cost more in page faults than in arithmetic on a CPU.
        x = x.to(self.out_dtype).reshape(b * c, h, w)
        rows_m, cols_t = _interp_matrix(h, self.size, x), _interp_matrix(w, self.size, x).T
        out = self._buffer((b * c, self.size, self.size), x)
        torch.matmul(rows_m.expand(b * c, self.size, h), x @ cols_t, out=out)
        return out.view(b, c, self.size, self.size)

    def _buffer(self, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """A ring of reusable output buffers on CPU (the model has consumed a batch before the ring
        comes round); the CUDA caching allocator already recycles memory on GPU."""
        if like.is_cuda or not self.reuse_buffers:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        ring = self._ring.setdefault((shape, like.dtype), [])
        if len(ring) < 3:
            ring.append(torch.empty(shape, dtype=like.dtype))
            return ring[-1]
        ring.append(ring.pop(0))
        return ring[-1]


_MATRICES: dict = {}


def _interp_matrix(n_in: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """(n_out, n_in) matrix of 1-D linear interpolation weights (align_corners=False), cached."""
    key = (n_in, n_out, like.dtype, like.device)
    if key not in _MATRICES:
        eye = torch.eye(n_in, dtype=torch.float64)[:, None, :]
        m = F.interpolate(eye, size=n_out, mode="linear", align_corners=False).squeeze(1).T
        _MATRICES[key] = m.to(like.device, like.dtype).contiguous()
    return _MATRICES[key]


def _rand(shape, gen, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def _center_crop(x: torch.Tensor, crop_pct: float) -> torch.Tensor:
    if crop_pct >= 1.0:
        return x
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * crop_pct)), max(1, round(w * crop_pct))
    top, left = (h - ch) // 2, (w - cw) // 2
    return x[..., top:top + ch, left:left + cw]


def _pad_crop_flip(x: torch.Tensor, pad_fraction: float, gen) -> torch.Tensor:
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


def _rotate_shift_flip(x: torch.Tensor, degrees: float, pad_fraction: float, gen) -> torch.Tensor:
    b, dev = x.shape[0], x.device
    ang = (_rand(b, gen, dev) * 2 - 1) * math.radians(degrees)
    shift = (_rand((b, 2), gen, dev) * 2 - 1) * 2 * pad_fraction  # grid units: 2 = full side
    flip = torch.where(_rand(b, gen, dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang), torch.sin(ang)
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], -1),
                         torch.stack([sin * flip, cos, shift[:, 1]], -1)], 1)
    return _affine_sample(x, theta, tuple(x.shape[-2:]))


def _colour_jitter(x: torch.Tensor, strength: float, gen) -> torch.Tensor:
    """Brightness, contrast and saturation, each scaled by U(1-s, 1+s) per image; x in [0, 1]."""
    b, dev = x.shape[0], x.device
    factors = 1 + (_rand((3, b, 1, 1, 1), gen, dev) * 2 - 1) * strength
    x = x * factors[0]
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    x = (x - gray.mean((2, 3), keepdim=True)) * factors[1] + gray.mean((2, 3), keepdim=True)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    return ((x - gray) * factors[2] + gray).clamp(0, 1)


def _random_resized_crop(x: torch.Tensor, size: int, scale: tuple[float, float], gen) -> torch.Tensor:
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


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float,
              cutmix_alpha: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (chosen 50/50 when both are on) with soft targets, as in timm's Mixup
    (label smoothing is applied to these targets by the loss)."""
    rng = np.random.default_rng(seed)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or rng.random() < 0.5)
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    lam = float(rng.beta(alpha, alpha))
    if use_cutmix:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        x = x * lam + x.flip(0) * (1 - lam)
    onehot = F.one_hot(y, num_classes).to(x.dtype if x.is_floating_point() else torch.float32)
    return x, onehot * lam + onehot.flip(0) * (1 - lam)
