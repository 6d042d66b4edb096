"""logger=wandb without network or account: offline files in the run directory, one line saying how to
upload them, and a resumed run that continues the same W&B run."""
from __future__ import annotations

import logging

import pytest
import torch

from cifar_ft.trackers.config import WandbOptions
from cifar_ft.trackers.wandb_tracker import mode
from cifar_ft.train import train
from tests.conftest import FAST, make_cfg

pytest.importorskip("wandb")


@pytest.fixture(autouse=True)
def no_account(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc from `wandb login`


def test_auto_is_offline_without_a_key_and_online_with_one(monkeypatch):
    assert mode(WandbOptions()) == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert mode(WandbOptions()) == "online" and mode(WandbOptions(mode="offline")) == "offline"


@pytest.mark.command  # trains a run: the command tier
def test_an_offline_run_keeps_its_files_says_how_to_sync_and_resumes_the_same_run(tmp_path, caplog):
    common = [*FAST, "logger=[tensorboard,wandb]"]
    with caplog.at_level(logging.INFO, logger="cifar_ft"):
        train(make_cfg([*common, "trainer.max_epochs=1"], tmp_path / "r"))
    said = [r.getMessage() for r in caplog.records if "wandb sync" in r.getMessage()]
    assert len(said) == 1 and "\n" not in said[0]
    offline = sorted((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and str(offline[0]) in said[0]
    run_id = torch.load(tmp_path / "r" / "checkpoints" / "last.ckpt", weights_only=True)["trackers"]["wandb"]
    assert offline[0].name.endswith(run_id)
    train(make_cfg([*common, "trainer.max_epochs=2", "ckpt_path=last"], tmp_path / "r"))
    runs = sorted((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert {r.name.rsplit("-", 1)[1] for r in runs} == {run_id}  # the same W&B run, continued
