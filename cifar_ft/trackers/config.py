"""The logger node's schemas (`logger.<name>`): each tracker's options, their types, defaults, valid values
and help. No `_target_`: each is built by its TRACKERS entry (`build.py`), which passes what the run knows
(its directory, tags, the ids it resumes) with these options. Light: no Lightning, no tracker package."""
from __future__ import annotations

import re
from dataclasses import dataclass

from cifar_ft.schema import knob, schema

WANDB_MODES = ("auto", "online", "offline")
NAME_VALID = "a name of letters, digits, spaces and _ . - /"


def _name(v: object) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[\w][\w .\-/]*", v) is not None
MLFLOW_PARENT_FILE = "mlflow_parent_run.json"  # in a sweep's directory: its MLflow parent run's id and store


@schema("logger", "tensorboard")
@dataclass
class TensorBoardOptions:
    """TensorBoard event files in <run dir>/tensorboard: curves, figures, the HPARAMS tab (the default)."""


@schema("logger", "csv")
@dataclass
class CSVOptions:
    """Every scalar as rows of <run dir>/csv/metrics.csv, and the config as hparams.yaml (no extra needed)."""

    flush_logs_every_n_steps: int = knob(100, "rows are written to the file every N logging calls", ge=1)


@schema("logger", "mlflow")
@dataclass
class MLflowOptions:
    """An MLflow run per training run (`pip install -e '.[mlflow]'`): params, the scalars, tags, artifacts."""

    tracking_uri: str | None = knob(None, "null: a SQLite store beside the runs (sqlite:///<outputs>/mlflow.db); "
                                          "http://host:port for a server; sqlite:///file.db")
    experiment_name: str = knob("cifar_ft", "the MLflow experiment the runs go to", check=_name,
                                valid=NAME_VALID)
    log_checkpoint: bool = knob(False, "also upload the best checkpoint as an artifact (large)")
    timeout_s: int = knob(10, "seconds an MLflow server has to answer a request before the tracker gives up "
                              "(the run goes on without it)", ge=1)


@schema("logger", "wandb")
@dataclass
class WandbOptions:
    """A Weights & Biases run (`pip install -e '.[wandb]'`): offline without an account, online with one."""

    project: str = knob("cifar_ft", "the W&B project", check=_name, valid=NAME_VALID)
    entity: str | None = knob(None, "the W&B team or user (null: the account's default)")
    mode: str = knob("auto", "auto: online when an API key is configured (WANDB_API_KEY or wandb login), else "
                             "offline (files in <run dir>/wandb, `wandb sync` later)", choices=WANDB_MODES)
