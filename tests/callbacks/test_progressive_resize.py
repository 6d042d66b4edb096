"""Progressive resizing: the schedule's sizes, and a run whose training batches follow it."""
from __future__ import annotations

import pytest

from cifar_ft.callbacks.progressive_resize import ProgressiveResize
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.train import train


def test_the_size_ramps_from_the_start_size_to_the_input_size_in_steps():
    cb = ProgressiveResize(start_size=64, start_fraction=0.0, end_fraction=0.5, step=16)
    sizes = [cb.size_at(step, 100, 128) for step in range(100)]
    assert sizes[0] == 64 and sizes[25] == 96 and sizes[50:] == [128] * 50
    assert sizes == sorted(sizes) and all(s % 16 == 0 for s in sizes)


@pytest.mark.parametrize("resume_step", [0, 37])
def test_the_size_depends_on_the_global_step_only(resume_step):
    cb = ProgressiveResize(start_size=32, end_fraction=0.8, step=8)
    assert cb.size_at(resume_step, 60, 64) == ProgressiveResize(32, 0.0, 0.8, 8).size_at(resume_step, 60, 64)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_run_trains_small_then_at_full_size_and_validates_and_tests_at_full_size(cfg_factory, monkeypatch):
    seen: list[tuple[bool, int]] = []
    forward = ImageClassifier.forward
    monkeypatch.setattr(ImageClassifier, "forward", lambda self, x: seen.append((self.training, x.shape[-1]))
                        or forward(self, x))
    train(cfg_factory("model.input_size=48", "callbacks=[default,progressive_resize]",
                      "callbacks.progressive_resize.start_size=16",
                      "callbacks.progressive_resize.end_fraction=0.5", "trainer.max_epochs=2",
                      "strategy.frozen_epochs=0"))
    trained = [s for t, s in seen if t]
    assert trained[0] < 32 and trained[-1] == 48 and trained == sorted(trained)
    assert trained[len(trained) * 3 // 4:] == [48] * len(trained[len(trained) * 3 // 4:])
    assert {s for t, s in seen if not t} == {48}
