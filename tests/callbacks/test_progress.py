"""Progress where the output goes: on a terminal a bar; in a log file (a cluster job) plain lines with step,
epoch, images/s, loss, elapsed and time left, and lines for the passes outside the training loop."""
from __future__ import annotations

import logging

import pytest

from cifar_ft.callbacks import progress
from cifar_ft.callbacks.progress import LoggedLossProgressBar, PlainProgress, plain_progress
from cifar_ft.train import train


def test_a_terminal_gets_the_bar_and_a_file_gets_lines(monkeypatch):
    monkeypatch.setattr(progress, "interactive", lambda: True)
    assert isinstance(progress.progress_bar(5), LoggedLossProgressBar)
    monkeypatch.setattr(progress, "interactive", lambda: False)
    assert isinstance(progress.progress_bar(5, every_s=7), PlainProgress)


def test_a_pass_outside_training_reports_its_progress(caplog):
    with caplog.at_level(logging.INFO, logger="cifar_ft"):
        assert list(plain_progress(range(4), "caching", 4, every_s=0)) == [0, 1, 2, 3]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("caching: 1/4 (25%), elapsed 0:00:00, left ") and lines[-1].startswith("caching: 4/4")


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
@pytest.mark.parametrize("frozen", [0, 1])
def test_a_run_logged_to_a_file_says_where_it_is(cfg_factory, monkeypatch, caplog, frozen):
    """The run as a cluster job runs it (stdout a file): lines during training, after each validation and
    test, and for the feature cache of a frozen epoch."""
    monkeypatch.setattr(progress, "interactive", lambda: False)
    cfg = cfg_factory("trainer.enable_progress_bar=true", "trainer.max_epochs=2", "trainer.log_every_n_steps=1",
                      f"strategy.frozen_epochs={frozen}",
                      "+callbacks.progress_bar._target_=cifar_ft.callbacks.progress.progress_bar",
                      "+callbacks.progress_bar.every_s=0")
    with caplog.at_level(logging.INFO, logger="cifar_ft"):
        train(cfg)
    lines = [r.getMessage() for r in caplog.records]
    steps = [line for line in lines if line.startswith("step ")]
    assert len(steps) == 24 and steps[-1].startswith("step 24/24, epoch 1, ")  # 400 training images / 32, 2 epochs
    assert all(" images/s, loss " in line and ", left " in line for line in steps)
    assert any(line.startswith("validation done at step 12: {'val/") for line in lines)
    assert any(line.startswith("test done at step 24: {'test/") for line in lines)
    assert any(line.startswith("[freeze] caching train features: ") for line in lines) == bool(frozen)
