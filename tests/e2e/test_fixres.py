"""FixRes: `model.test_input_size` sets the size validation, test and eval see; training keeps input_size."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cifar_ft.eval import evaluate
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.train import train
from tests.conftest import make_cfg


def test_a_test_resolution_reaches_validation_test_and_eval_and_eval_can_change_it(cfg_factory, tmp_path,
                                                                                    monkeypatch):
    seen: list[tuple[bool, int]] = []  # (training, image size) of every forward pass
    forward = ImageClassifier.forward
    monkeypatch.setattr(ImageClassifier, "forward", lambda self, x: seen.append((self.training, x.shape[-1]))
                        or forward(self, x))
    cfg = cfg_factory("model.test_input_size=48", "trainer.max_epochs=1", "strategy.frozen_epochs=0")
    train(cfg)
    assert {s for t, s in seen if t} == {32} and {s for t, s in seen if not t} == {48}
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert torch.load(metrics["best_ckpt"], weights_only=True)["hyper_parameters"]["inputs"]["test_size"] == 48
    seen.clear()
    own = evaluate(make_cfg([f"ckpt_path={metrics['best_ckpt']}", "trainer.enable_progress_bar=false"],
                            tmp_path / "e1", "eval"))
    assert {s for _, s in seen} == {48} and own["test/acc"] == pytest.approx(metrics["test/acc"])
    seen.clear()
    evaluate(make_cfg([f"ckpt_path={metrics['best_ckpt']}", "trainer.enable_progress_bar=false",
                       "model.test_input_size=64"], tmp_path / "e2", "eval"))
    assert {s for _, s in seen} == {64}
