"""Mixup and CutMix on a normalised batch, with soft targets (timm's `Mixup`, batched on the device)."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup_alpha: float,
              cutmix_alpha: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix (chosen 50/50 when both are on) with soft targets, as in timm's Mixup
    (label smoothing is applied to these targets by the loss). `seed` fixes the draw per batch."""
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
