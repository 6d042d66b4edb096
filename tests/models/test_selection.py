"""Selective backprop (model.backprop_fraction): which images the backward pass sees, and what scoring
leaves untouched."""
from __future__ import annotations

import pytest
import torch

from cifar_ft.errors import ConfigError
from cifar_ft.models.selection import hardest, score
from tests.models.test_classifier import tiny


def test_hardest_keeps_the_highest_losses_in_batch_order():
    losses = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.2, 1.0])
    assert hardest(losses, 0.5).tolist() == [1, 3, 5]
    assert hardest(losses, 1.0).tolist() == list(range(6))
    assert hardest(losses, 0.01).tolist() == [3]  # at least one image


def test_scoring_neither_moves_batchnorm_statistics_nor_changes_module_modes():
    model = tiny()
    model.train()
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    bns[0].eval()  # as a strategy with frozen statistics keeps it
    before = [bn.running_mean.clone() for bn in bns]
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    logits, losses = score(model, model.loss, x, y)
    assert logits.shape == (8, 10) and losses.shape == (8,) and not logits.requires_grad
    assert all(torch.equal(bn.running_mean, b) for bn, b in zip(bns, before))
    assert not bns[0].training and all(bn.training for bn in bns[1:]) and model.head.training


def test_training_step_backpropagates_through_the_hardest_half_only():
    torch.manual_seed(0)
    model = tiny(backprop_fraction=0.5)
    model.train()
    model.log = lambda *a, **k: None  # no trainer attached
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    _, losses = score(model, model.loss, x, y)
    expected = torch.topk(losses, 8).indices.sort().values
    seen = []
    step = model._step
    model._step = lambda xb, yb: (seen.append((xb, yb)), step(xb, yb))[1]
    loss = model.training_step((x, y), 0)
    (xb, yb), = seen
    assert torch.equal(xb, x[expected]) and torch.equal(yb, y[expected])
    loss.backward()
    assert model.head.weight.grad is not None


@pytest.mark.parametrize("fraction", [0, 1.5, -0.2, True])
def test_a_fraction_outside_0_1_is_refused(fraction):
    with pytest.raises(ConfigError, match="model.backprop_fraction"):
        tiny(backprop_fraction=fraction)
