"""`hparams_search=optuna` from Hydra's config to a running worker (`search.Worker`), and the study view
when it ends. The settings are the keys of `conf/hydra/sweeper/optuna.yaml`; each is checked here,
before the first trial, with a one-line error naming the bad value."""
from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.sweeps.search import Worker, follow
from cifar_ft.sweeps.space import search_space
from cifar_ft.sweeps.storage import (
    Claims,
    check_space,
    check_storage_url,
    make_storage,
    open_study,
    record_space,
)
from cifar_ft.sweeps.study_view import write_study_view
from cifar_ft.sweeps.trial import PRUNERS, is_follower

log = logging.getLogger("cifar_ft")
# Heartbeats, their retry callback and fail_stale_trials are "experimental" in Optuna since 2.8 and
# meant for Study.optimize; we drive them from ask-and-tell on purpose (cifar_ft.sweeps.search).
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
DIRECTIONS = ("maximize", "minimize")


@dataclass
class Settings:
    storage: str
    study_name: str = "cifar_ft"
    n_trials: int = 20
    n_jobs: int = 1
    direction: Any = "maximize"            # one direction, or a list (multi-objective)
    objectives: list[str] | None = None    # metrics.json keys, one per direction (None: optimized_metric)
    sampler: Any = None
    params: dict | None = None
    pruner: str = "none"
    pruner_args: dict | None = None
    heartbeat_interval: int = 10           # seconds between a running trial's heartbeats
    grace_period: int = 60                 # seconds without a heartbeat before a trial counts as lost
    max_retry: int = 3                     # retries of one lost trial

    @classmethod
    def parse(cls, raw: dict) -> Settings:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(raw) - names)
        if unknown:
            raise ConfigError(f"hydra.sweeper.{unknown[0]} is not a setting of the Optuna sweeper; valid: "
                              f"{', '.join(sorted(names))}")
        plain = {k: OmegaConf.to_container(v, resolve=True) if isinstance(v, (DictConfig, ListConfig))
                 and k != "sampler" else v for k, v in raw.items()}
        settings = cls(**plain)
        settings.check()
        return settings

    @property
    def directions(self) -> list[str]:
        return list(self.direction) if isinstance(self.direction, (list, tuple)) else [self.direction]

    def check(self) -> None:
        for d in self.directions:
            check_choice("hydra.sweeper.direction", d, DIRECTIONS)
        for key in ("n_trials", "n_jobs", "heartbeat_interval", "max_retry"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "max_retry" else 1):
                raise ConfigError(f"hydra.sweeper.{key}={value!r} is not valid; valid: a whole number >= 1")
        if not isinstance(self.grace_period, int) or self.grace_period <= self.heartbeat_interval:
            raise ConfigError(f"hydra.sweeper.grace_period={self.grace_period!r} is not valid; valid: seconds > "
                              f"hydra.sweeper.heartbeat_interval ({self.heartbeat_interval})")
        check_choice("hydra.sweeper.pruner", self.pruner, PRUNERS)
        if len(self.directions) > 1 and len(self.objectives or []) != len(self.directions):
            raise ConfigError(f"hydra.sweeper.direction={self.directions} has {len(self.directions)} objectives: "
                              "name them in hydra.sweeper.objectives, one metrics.json key per direction "
                              "(e.g. [val/acc_best, fit_time_s])")
        if len(self.directions) > 1 and self.pruner != "none":
            raise ConfigError(f"hydra.sweeper.pruner={self.pruner!r} with {len(self.directions)} objectives: Optuna "
                              "prunes single-objective studies only; valid: none")


def build_sampler(sampler: Any) -> optuna.samplers.BaseSampler | None:
    """`hydra.sweeper.sampler`: an instantiated sampler, a `_target_` config, or null (Optuna's TPE)."""
    if sampler is None or isinstance(sampler, optuna.samplers.BaseSampler):
        return sampler
    built = instantiate(sampler)
    if not isinstance(built, optuna.samplers.BaseSampler):
        raise ConfigError(f"hydra.sweeper.sampler builds a {type(built).__name__}, not an Optuna sampler")
    if isinstance(built, optuna.samplers.CmaEsSampler):  # it unpickles what it finds in the study's storage
        raise ConfigError("hydra.sweeper.sampler=CmaEsSampler is refused: it keeps its state as pickles in the "
                          "study storage, so whoever can write the storage could run code on every worker; "
                          "use optuna.samplers.TPESampler (the default), GPSampler or QMCSampler")
    return built


def run_search(config: DictConfig, launch: Callable, raw_settings: dict, arguments: list[str]) -> list:
    """One worker's whole search (DDP ranks > 0: the jobs their rank 0 runs)."""
    settings = Settings.parse(dict(raw_settings))
    sweep_dir = Path(config.hydra.sweep.dir)
    space = search_space(settings.params, arguments)
    if is_follower():
        sweep_dir.mkdir(parents=True, exist_ok=True)
        return follow(launch)
    # everything that can be refused is refused before the sweep directory is written
    check_storage_url(settings.storage, sweep_dir)
    sampler = build_sampler(settings.sampler)
    check_space(settings.storage, settings.study_name, space.distributions)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(config, sweep_dir / "multirun.yaml")
    storage = make_storage(settings.storage, settings.heartbeat_interval, settings.grace_period, settings.max_retry)
    with Claims(sweep_dir).asking():  # one worker creates the study, the others join it
        joined = settings.study_name in optuna.get_all_study_names(storage)
        study = open_study(storage, settings.study_name, settings.directions, sampler)
        record_space(study, space.distributions)
    if joined and sampler is not None:
        sampler.reseed_rng()  # workers with one seed would otherwise sample the same first trials
    log.info("%s study %s (%s): %d trials in all", "joined" if joined else "created", settings.study_name,
             settings.storage, settings.n_trials)
    rerun_failed = bool(OmegaConf.select(config, "sweep.rerun_failed", default=False))
    worker = Worker(study, storage, space, sweep_dir, launch, settings.n_trials, settings.n_jobs,
                    settings.heartbeat_interval, settings.objectives, rerun_failed)
    results = worker.run()
    write_study_view(study, sweep_dir, space.fixed)
    return results
