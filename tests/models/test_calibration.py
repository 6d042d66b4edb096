"""Calibration of the tested probabilities: ECE, MCE, NLL and Brier against a direct computation."""
from __future__ import annotations

import math

import pytest
import torch

from cifar_ft.models.metrics import calibration_metrics
from cifar_ft.reports.figures import reliability_bins, reliability_figure


def direct(probs: torch.Tensor, target: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """The textbook definitions (Guo et al., 2017; Brier, 1950), one image at a time."""
    conf, pred = probs.max(1)
    ece, mce = 0.0, 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        members = [i for i in range(len(conf)) if lo < float(conf[i]) <= hi]
        if not members:
            continue
        acc = sum(int(pred[i] == target[i]) for i in members) / len(members)
        mean_conf = sum(float(conf[i]) for i in members) / len(members)
        ece += len(members) / len(conf) * abs(acc - mean_conf)
        mce = max(mce, abs(acc - mean_conf))
    nll = sum(-math.log(max(float(probs[i, target[i]]), 1e-12)) for i in range(len(target))) / len(target)
    brier = sum(sum((float(probs[i, c]) - (c == int(target[i]))) ** 2 for c in range(probs.shape[1]))
                for i in range(len(target))) / len(target)
    return {"ece": ece, "mce": mce, "nll": nll, "brier": brier}


def test_calibration_metrics_match_a_direct_computation_in_batches():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 10, generator=gen) * 3
    target = torch.randint(0, 10, (300,), generator=gen)
    target[:150] = logits[:150].argmax(1)  # half right: the bins hold both outcomes
    probs = logits.softmax(1)
    metrics = calibration_metrics(10, "test")
    for chunk in range(0, 300, 64):  # updates accumulate like test batches
        metrics.update(probs[chunk:chunk + 64], target[chunk:chunk + 64])
    got = {k.split("/")[1]: float(v) for k, v in metrics.compute().items()}
    want = direct(probs, target)
    for name in ("ece", "mce", "nll", "brier"):
        assert got[name] == pytest.approx(want[name], abs=1e-5), name
    bins = reliability_bins(probs.max(1).values, probs.argmax(1) == target)
    assert float(bins["ece"]) == pytest.approx(want["ece"], abs=1e-6)  # the diagram's title is the metric
    assert int(bins["count"].sum()) == 300


def test_a_perfectly_calibrated_and_an_overconfident_model_are_told_apart():
    gen = torch.Generator().manual_seed(1)
    conf = torch.rand(20000, generator=gen) * 0.5 + 0.5
    correct = torch.rand(20000, generator=gen) < conf  # right as often as it is confident
    assert float(reliability_bins(conf, correct)["ece"]) < 0.02
    assert float(reliability_bins(conf.clamp(0.99, 1.0), correct)["ece"]) > 0.2  # always ~99 % sure


def test_the_reliability_figure_is_an_image_of_the_expected_size(tmp_path):
    from PIL import Image

    conf = torch.linspace(0.1, 1.0, 50)
    reliability_figure(conf, conf > 0.5).savefig(tmp_path / "reliability.png", dpi=110)
    with Image.open(tmp_path / "reliability.png") as im:
        assert im.size == (605, 715)  # 5.5 x 6.5 inches at 110 dpi
