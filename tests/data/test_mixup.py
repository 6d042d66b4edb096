"""Mixup / CutMix soft targets."""
from __future__ import annotations

import torch

from cifar_ft.data.mixup import mix_batch


def test_mixup_soft_targets_sum_to_one():
    x = torch.randn(6, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for alpha in [(0.4, 0.0), (0.0, 1.0)]:
        xm, ym = mix_batch(x, y, 3, alpha[0], alpha[1], seed=5)
        assert xm.shape == x.shape and ym.shape == (6, 3)
        assert torch.allclose(ym.sum(1), torch.ones(6))
