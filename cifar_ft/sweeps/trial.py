"""The trial's side of a search, inside its job: per-epoch reports and pruning, and what the job's
directory says back to the worker (COMPLETE with values, PRUNED, or FAIL with its error line).

The worker passes the trial's number to its job as the environment variable `CIFAR_FT_OPTUNA_TRIAL`
(`hydra.job.env_set`, so every launcher carries it, and the DDP ranks a job starts inherit it); the
study's storage and name, and the pruner, come from the job's `hydra.sweeper` config.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import optuna
from optuna.trial import TrialState

from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.plain import read_data

TRIAL_ENV = "CIFAR_FT_OPTUNA_TRIAL"
LEADER_ENV = "CIFAR_FT_SWEEP_LEADER"  # the file in which a worker publishes its jobs to its DDP ranks

# hydra.sweeper.pruner -> (Optuna pruner, the hydra.sweeper.pruner_args it takes)
PRUNERS = {
    "none": (optuna.pruners.NopPruner, ()),
    "median": (optuna.pruners.MedianPruner, ("n_startup_trials", "n_warmup_steps")),
    "hyperband": (optuna.pruners.HyperbandPruner, ("min_resource", "max_resource", "reduction_factor")),
    "successive_halving": (optuna.pruners.SuccessiveHalvingPruner, ("min_resource", "reduction_factor")),
}


def make_pruner(name: str, args: dict | None) -> optuna.pruners.BasePruner:
    check_choice("hydra.sweeper.pruner", name, PRUNERS)
    cls, keys = PRUNERS[name]
    return cls(**{k: v for k, v in (args or {}).items() if k in keys and v is not None})


def is_follower() -> bool:
    """A DDP rank other than global rank 0 (its process was started by rank 0's job)."""
    rank = os.environ.get("RANK")
    if rank is not None:
        return int(rank) != 0
    return int(os.environ.get("LOCAL_RANK", 0)) != 0 or int(os.environ.get("NODE_RANK", 0)) != 0


class PruneTrial(L.Callback):
    """Reports `monitor` to the trial after every validation epoch and stops the run when the pruner
    says so. Rank 0 reports and decides; the decision is broadcast to every rank at the epoch boundary
    (one collective per epoch), and all ranks stop together.

    Ours rather than optuna-integration's `PyTorchLightningPruningCallback`: that one needs the
    `Trial` object in the training process (ours runs in the worker), raises inside `fit` (our job
    then ends without its last checkpoint and logs), and reads a private attribute of the Trainer."""

    def __init__(self, storage: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner,
                 monitor: str) -> None:
        self.storage, self.study_name, self.number = storage, study_name, number
        self.pruner, self.monitor = pruner, monitor
        self.pruned_at: int | None = None  # the epoch the trial was pruned at, read by the command
        self._trial: optuna.Trial | None = None

    def trial(self) -> optuna.Trial:
        if self._trial is None:
            kwargs = {"connect_args": {"timeout": 60}} if self.storage.startswith("sqlite") else {}
            storage = optuna.storages.RDBStorage(self.storage, engine_kwargs=kwargs)
            study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=self.pruner)
            trial_id = storage.get_trial_id_from_study_id_trial_number(
                storage.get_study_id_from_name(self.study_name), self.number)
            self._trial = optuna.Trial(study, trial_id)
        return self._trial

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            value = trainer.callback_metrics.get(self.monitor)
            if value is None:
                raise ConfigError(f"optimized_metric={self.monitor!r} was not logged, so the pruner has nothing "
                                  f"to compare; valid: {', '.join(sorted(trainer.callback_metrics))}")
            self.trial().report(float(value), step=trainer.current_epoch)
            prune = self.trial().should_prune()
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            self.pruned_at = trainer.current_epoch
            trainer.should_stop = True


def trial_callbacks(sweeper: dict | None, monitor: str) -> list[PruneTrial]:
    """The pruning callback of this job, when it is a trial of our sweeper with a pruner set."""
    number = os.environ.get(TRIAL_ENV)
    if number is None or not sweeper or sweeper.get("pruner", "none") == "none":
        return []
    pruner = make_pruner(sweeper["pruner"], sweeper.get("pruner_args"))
    return [PruneTrial(sweeper["storage"], sweeper["study_name"], int(number), pruner, monitor)]


@dataclass
class TrialResult:
    state: TrialState
    values: list[float] | None = None
    error: str | None = None


def read_result(job_return, job_dir: Path, objectives: list[str] | None) -> TrialResult:
    """What a finished job means for its trial. `objectives`: metrics.json keys, one per study
    direction (None: the job's return value, the best `optimized_metric`)."""
    metrics_file, error_file = job_dir / "metrics.json", job_dir / "error.txt"
    metrics = read_data(metrics_file, json.loads, dict)  # read as data: numbers are the only objectives
    if metrics.get("pruned") is True:
        return TrialResult(TrialState.PRUNED)
    if error_file.is_file() and not metrics:
        lines = error_file.read_text().strip().splitlines()
        return TrialResult(TrialState.FAIL, error=lines[-1] if lines else "failed")
    try:
        value = job_return.return_value
    except Exception as exc:  # noqa: BLE001 - a job that raised: its trial failed
        return TrialResult(TrialState.FAIL, error=f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}")
    if objectives:
        missing = [k for k in objectives if not isinstance(metrics.get(k), (int, float))]
        if missing:
            return TrialResult(TrialState.FAIL, error=f"objective {missing[0]!r} not in {metrics_file}; valid: "
                                                      f"{', '.join(sorted(metrics))}")
        values = [float(metrics[k]) for k in objectives]
    else:
        values = [float(value)] if isinstance(value, (int, float)) else []
    if not values or not all(math.isfinite(v) for v in values):
        return TrialResult(TrialState.FAIL, error=f"objective is not a finite number: {values or value!r}")
    return TrialResult(TrialState.COMPLETE, values)
