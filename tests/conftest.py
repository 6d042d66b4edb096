"""Shared fixtures: the real conf/ through Hydra's compose API, tiny models, synthetic data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from cifar_ft.runs.compose import CONF_DIR, compose_config

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

# A fast synthetic setup: 10 classes, 32 px, a few hundred images, tiny timm ResNet (with BN).
FAST = ["experiment=smoke", "data.train_size=480", "data.val_size=80", "data.test_size=160",
        "data.batch_size=32", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "~callbacks.progress_bar"]

__all__ = ["CONF_DIR", "FAST", "ROOT", "make_cfg"]


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: the tier marker must be there when it looks
def pytest_collection_modifyitems(config, items):
    """The tiering rule (docs/architecture.md, "Tests"): a test under tests/e2e/ runs whole commands and is
    of the `command` tier unless it is `slow`; everything else is the fast tier."""
    for item in items:
        if Path(str(item.fspath)).parent.name == "e2e" and "slow" not in item.keywords:
            item.add_marker(pytest.mark.command)


def make_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    return compose_config(overrides, output_dir, config_name)


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, fast: bool = True, name: str = "run", config_name: str = "train"):
        base = FAST if fast and config_name == "train" else []
        return make_cfg([*base, *overrides], tmp_path / name, config_name)
    return factory
