"""The real `conf/` composed through Hydra's compose API, outside a command: for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from cifar_ft.runs.resolvers import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_config(overrides: list[str], output_dir: str | Path | None = None,
                   config_name: str = "train") -> DictConfig:
    """`conf/<config_name>.yaml` with `overrides`; `paths.output_dir` (the run directory a command
    would get from Hydra) set to `output_dir`."""
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg
