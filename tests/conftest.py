"""Shared fixtures: the real conf/ through Hydra's compose API, tiny models, synthetic data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network

# A fast synthetic setup: 10 classes, 32 px, a few hundred images, tiny timm ResNet (with BN).
FAST = ["experiment=smoke", "data.train_size=480", "data.val_size=80", "data.test_size=160",
        "data.batch_size=32", "trainer.num_sanity_val_steps=0", "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false", "~callbacks.progress_bar"]


def make_cfg(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
    return cfg


@pytest.fixture
def cfg_factory(tmp_path):
    def factory(*overrides: str, fast: bool = True, name: str = "run", config_name: str = "train"):
        base = FAST if fast and config_name == "train" else []
        return make_cfg([*base, *overrides], tmp_path / name, config_name)
    return factory
