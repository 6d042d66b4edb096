"""The `logger=` choices as Lightning loggers: one registry entry per tracker (TRACKERS), built from its
options (`config.py`) and what the run knows (`RunInfo`: its directory, tags, the ids to resume).

When each part runs: `check_trackers` before the run builds anything (a missing extra or a tracking server
that does not answer is one line); `build_loggers` once the data is set up (the tags need its fingerprint);
`finish_trackers` after the test, when the run's files exist (they go up as artifacts).
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cifar_ft.errors import ConfigError
from cifar_ft.trackers import mlflow_tracker, wandb_tracker
from cifar_ft.trackers.config import CSVOptions, MLflowOptions, TensorBoardOptions, WandbOptions

log = logging.getLogger("cifar_ft")


@dataclass(frozen=True)
class RunInfo:
    """What a tracker is told about the run: where it writes, how it is tagged, which tracker runs it
    continues (`resume_ids`, from the checkpoint it resumes: tracker name -> run id), and, in a sweep, the
    sweep's directory and the job's number (one parent run per sweep, a child run per job)."""

    output_dir: Path
    tags: Mapping[str, str] = field(default_factory=dict)
    resume_ids: Mapping[str, str] = field(default_factory=dict)
    sweep_dir: Path | None = None
    job: int | None = None


def _tensorboard(options: TensorBoardOptions, run: RunInfo):
    from lightning.pytorch.loggers import TensorBoardLogger

    # the run's figures and sweep summaries read <run dir>/tensorboard; a resumed run writes on in it
    return TensorBoardLogger(save_dir=str(run.output_dir), name="tensorboard", version="", default_hp_metric=False)


def _csv(options: CSVOptions, run: RunInfo):
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(run.output_dir), name="csv", version="",
                     flush_logs_every_n_steps=options.flush_logs_every_n_steps)


@dataclass(frozen=True)
class Tracker:
    """A registry entry: its options' schema, how to build it, and (optional) the check before the run,
    the end-of-run step and the id a resumed run continues."""

    options: type
    build: Callable[[Any, RunInfo], Any]
    check: Callable[[Any], None] | None = None
    finish: Callable[[Any, Any, Path, dict], None] | None = None
    run_id: Callable[[Any], str | None] | None = None


TRACKERS: dict[str, Tracker] = {
    "tensorboard": Tracker(TensorBoardOptions, _tensorboard),
    "csv": Tracker(CSVOptions, _csv),
    "mlflow": Tracker(MLflowOptions, mlflow_tracker.build, mlflow_tracker.check, mlflow_tracker.finish,
                      mlflow_tracker.run_id),
    "wandb": Tracker(WandbOptions, wandb_tracker.build, wandb_tracker.check, wandb_tracker.finish,
                     wandb_tracker.run_id),
}


def tracker_options(node: Mapping[str, Any] | None) -> dict[str, Any]:
    """The logger node (`{name: options}`, plain values) -> {name: that tracker's options dataclass}; a user's
    own logger config (one holding `_target_`) stays a mapping: `build_loggers` instantiates it."""
    out: dict[str, Any] = {}
    for name, values in (node or {}).items():
        if values is not None:
            out[name] = TRACKERS[name].options(**values) if name in TRACKERS else dict(values)
    return out


def check_trackers(options: Mapping[str, Any]) -> None:
    """Before the run builds anything: each chosen tracker's extra is installed and its server answers."""
    for name, opts in options.items():
        if name in TRACKERS and TRACKERS[name].check is not None:
            TRACKERS[name].check(opts)


def build_loggers(options: Mapping[str, Any], run: RunInfo) -> list:
    from hydra.utils import instantiate

    loggers = []
    for name, opts in options.items():
        if name in TRACKERS:
            loggers.append(TRACKERS[name].build(opts, run))
        elif "_target_" in opts:  # a logger config of the user's own: Lightning's arguments
            loggers.append(instantiate(opts, save_dir=str(run.output_dir)))
        else:
            raise ConfigError(f"logger={name}: not a tracker (valid: {', '.join(TRACKERS)}) and no _target_")
    return loggers


def tracker_ids(options: Mapping[str, Any], loggers: list) -> dict[str, str]:
    """name -> the tracker run's id, for the trackers a resumed run continues (kept in checkpoints)."""
    ids = {}
    for (name, _), logger in zip(options.items(), loggers):
        if name in TRACKERS and TRACKERS[name].run_id is not None and (found := TRACKERS[name].run_id(logger)):
            ids[name] = found
    return ids


def finish_trackers(options: Mapping[str, Any], loggers: list, output_dir: Path, facts: dict) -> None:
    """After the test: each tracker takes the run's files (figures, metrics.json, ...) and its facts."""
    for (name, opts), logger in zip(options.items(), loggers):
        if name in TRACKERS and TRACKERS[name].finish is not None:
            TRACKERS[name].finish(opts, logger, output_dir, facts)
