"""`python -m cifar_ft.train`: one training run (`runs/fit.py`), or a job of a sweep.

Light to import: the training stack is imported when a run starts, so `--help` and a one-line config error
cost only the config checks. A job of a multirun hands its sweep's concerns (skip a finished job, resume an
interrupted one, a trial's pruning) to the run as plain values."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from hydra_plugins.cifar_ft.optuna_sweeper import register as register_sweeper
from omegaconf import DictConfig

from cifar_ft.runs.entry import command, in_multirun
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")
register_sweeper()    # hparams_search=optuna, also where Hydra's plugin scan misses editable installs


def train(cfg: DictConfig) -> float | None:
    """One run; returns `cfg.optimized_metric` (best value seen) for sweepers."""
    start = time.time()
    validate_config(cfg)
    from cifar_ft.reports.artifacts import ensure_writable  # from here on: the run itself
    from cifar_ft.reports.robustness import robustness_config
    from cifar_ft.runs.fit import fit_and_test

    corruptions = robustness_config(cfg.get("robustness"))
    ensure_writable(Path(cfg.paths.output_dir))
    resume, pruning = False, []
    if in_multirun():  # a re-run sweep: skip finished jobs, resume interrupted ones; a trial's pruning
        from cifar_ft.sweeps.jobs import previous_attempt, sweeper_settings
        from cifar_ft.sweeps.trial import trial_callbacks

        attempt = previous_attempt(cfg, Path(cfg.paths.output_dir), cfg.optimized_metric)
        if attempt.action == "skip":
            return attempt.result
        resume = attempt.action == "resume"
        pruning = trial_callbacks(sweeper_settings(), cfg.optimized_metric)
    return fit_and_test(cfg, start, resume, pruning, corruptions)


main = command(train, "train")

if __name__ == "__main__":
    main()
