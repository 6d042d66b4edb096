"""Test-time augmentation: tta=flip averages the probabilities of each image and its mirror, in the
final test of a run, in eval (the checkpoint's default) and in predict."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from cifar_ft.data.synthetic import SyntheticDataModule
from cifar_ft.models.factory import build_classifier
from cifar_ft.runs.checkpoints import load_classifier
from cifar_ft.train import train


def test_flip_is_the_mean_of_the_two_passes():
    model = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32).eval()
    x = torch.randn(6, 3, 32, 32)
    with torch.no_grad():
        want = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2
        assert torch.allclose(model.predict_probs(x, "flip"), want, atol=1e-6)
        assert torch.allclose(model.predict_probs(x, "none"), model(x).softmax(-1), atol=1e-6)
        assert not torch.allclose(want, model(x).softmax(-1), atol=1e-4)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_run_tests_with_flip_and_records_it(cfg_factory):
    cfg = cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=0", "tta=flip")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tta"] == "flip"
    ckpt = torch.load(metrics["best_ckpt"], weights_only=True)
    assert ckpt["hyper_parameters"]["tta"] == "flip"  # eval and predict default to it
    model = load_classifier(metrics["best_ckpt"]).eval()
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=32, train_size=480,
                             val_size=80, test_size=160)
    dm.setup("test")
    x = dm.batch_transform(False)(dm.splits["test"].images)
    with torch.no_grad():
        probs = (model(x).softmax(-1) + model(x.flip(-1)).softmax(-1)) / 2
    rows = list(csv.DictReader((out / "test_predictions.csv").open()))
    confidence = torch.tensor([float(r["confidence"]) for r in rows])
    assert torch.allclose(confidence, probs.max(-1).values.double().float(), atol=1e-5)
    accuracy = (probs.argmax(-1) == dm.splits["test"].labels).float().mean().item()
    assert abs(accuracy - metrics["test/acc"]) < 1e-6
