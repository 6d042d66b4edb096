"""`python -m cifar_ft.train`: one training run (`runs/fit.py`), or a job of a sweep.

Light to import: the training stack is imported when a run starts, so `--help` and a one-line config error
cost only the config checks. A job of a multirun hands its sweep's concerns (skip a finished job, resume an
interrupted one, a trial's pruning) to the run as a `contracts.JobPlan`."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from hydra_plugins.cifar_ft.optuna_sweeper import register as register_sweeper
from omegaconf import DictConfig

from cifar_ft.contracts import JobPlan
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
    plan = JobPlan()
    if in_multirun():  # the sweep's side of the contract: skip a finished job, resume an interrupted one
        from cifar_ft.sweeps.jobs import plan_job

        plan = plan_job(cfg)
    if plan.skip:
        return plan.result
    return fit_and_test(cfg, start, plan, corruptions)


main = command(train, "train")

if __name__ == "__main__":
    main()
