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


def make_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    return compose_config(overrides, output_dir, config_name)


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, fast: bool = True, name: str = "run", config_name: str = "train"):
        base = FAST if fast and config_name == "train" else []
        return make_cfg([*base, *overrides], tmp_path / name, config_name)
    return factory
