"""Batched image transforms that run on the training device, on uint8 batches (B, 3, h, w).

Geometry (pad-crop, flip, rotation, random-resized-crop) and colour jitter act at the stored
resolution (32 px for CIFAR), where they are cheap; normalisation is applied there too (it is
per-channel affine, so it commutes with bilinear resizing, whose weights sum to 1). The single pass
at the backbone's input size is the final resize, written directly in the output dtype.

Add an augmentation preset: a function `(transform, uint8 batch, generator) -> model input` and an
entry in `PRESETS` (`data.augment=<name>`); a new strength knob is a field of `AugmentOptions`
(`cifar_ft.data.augment_options`: `data.<field>`, its type, default, range and help).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cifar_ft.data import augment as ops
from cifar_ft.data.augment_options import AugmentOptions
from cifar_ft.errors import check_choice


@dataclass(frozen=True)
class Preset:
    """`batch(transform, x, gen)`: uint8 batch -> model input on the device. `sample()`: an optional
    per-image torchvision v2 transform that runs in the DataLoader first (policies like RandAugment)."""

    batch: Callable[[BatchTransform, torch.Tensor, torch.Generator | None], torch.Tensor]
    sample: Callable[[], Callable] | None = None


def _plain(tf: BatchTransform, x: torch.Tensor, gen=None) -> torch.Tensor:
    """What validation and test images get: the eval center crop, normalise, resize."""
    return tf.finish(ops.center_crop(x, tf.eval_crop_pct))


def _basic(tf: BatchTransform, x: torch.Tensor, gen) -> torch.Tensor:
    return tf.finish(ops.pad_crop_flip(x, tf.options.pad_fraction, gen))


def _jitter(tf: BatchTransform, x: torch.Tensor, gen) -> torch.Tensor:
    xf = ops.rotate_shift_flip(x.float(), tf.options.rotation_deg, tf.options.pad_fraction, gen)
    return tf.finish(ops.colour_jitter(xf / 255.0, tf.options.color_jitter, gen) * 255.0)


def _rrc(tf: BatchTransform, x: torch.Tensor, gen) -> torch.Tensor:
    return ops.random_resized_crop(tf.normalise(x), tf.size, tf.options.rrc_scale, gen).to(tf.out_dtype)


def _randaugment() -> Callable:
    from torchvision.transforms import v2

    return v2.RandAugment(num_ops=2, magnitude=9)


def _trivialaugment() -> Callable:
    from torchvision.transforms import v2

    return v2.TrivialAugmentWide()


# data.augment -> preset
PRESETS: dict[str, Preset] = {
    "none": Preset(_plain),
    "basic": Preset(_basic),                                     # pad-crop + flip
    "jitter": Preset(_jitter),                                   # + rotation, colour jitter
    "rrc": Preset(_rrc),                                         # random-resized-crop + flip
    "randaugment": Preset(_basic, sample=_randaugment),          # per image, then basic
    "trivialaugment": Preset(_basic, sample=_trivialaugment),    # per image, then basic
}


def check_preset(preset: str) -> str:
    return check_choice("data.augment", preset, PRESETS)


def sample_transform(preset: str) -> Callable | None:
    """Per-image uint8 transform for the DataLoader (None for fully batched presets)."""
    make = PRESETS[check_preset(preset)].sample
    return make() if make is not None else None


class BatchTransform:
    """uint8 (B,3,h,w) -> normalised float (B,3,S,S) at the backbone's input size S."""

    def __init__(self, input_size: int, mean: list[float], std: list[float], train: bool,
                 preset: str = "basic", options: AugmentOptions | None = None, eval_crop_pct: float = 1.0,
                 out_dtype: torch.dtype = torch.float32, reuse_buffers: bool = False) -> None:
        self.size, self.train, self.preset = int(input_size), train, check_preset(preset)
        self.mean, self.std = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        self.options = options or AugmentOptions()
        self.eval_crop_pct, self.out_dtype = eval_crop_pct, out_dtype
        self.reuse_buffers, self._ring = reuse_buffers, {}

    def __call__(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if not self.train:
            return _plain(self, x)
        out = PRESETS[self.preset].batch(self, x, gen)
        if self.options.random_erasing > 0:  # on the model input, after the preset (as timm does)
            out = ops.random_erase(out, self.options.random_erasing, gen)
        return out

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise at the stored size, then the one resize to the input size."""
        return self._resize(self.normalise(x))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
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
