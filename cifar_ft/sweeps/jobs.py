"""Sweeps that survive a crash: what a job of a multirun does when its directory holds an earlier attempt.

Re-running the same multirun command with the same `hydra.sweep.dir`:
- a job that finished (`metrics.json`) with the same config is skipped; its result is reported again;
- a job that was interrupted (`checkpoints/last.ckpt`, no metrics.json) resumes from that checkpoint;
- a job that failed (`error.txt`) is skipped, and run again only with `sweep.rerun_failed=true`.
The config is fingerprinted into `job.json` when a job starts, so a directory holding a job of another
config is refused (one line) instead of being skipped or mixed into.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cifar_ft.contracts import JobPlan
from cifar_ft.errors import ConfigError
from cifar_ft.plain import read_data

log = logging.getLogger("cifar_ft")
# keys that differ between attempts of the same job by design
# Keys that do not change what a job computes (how it is restarted, what it prints): not fingerprinted.
RESTART_KEYS = ("ckpt_path", "sweep")


@dataclass
class Attempt:
    action: str                  # "run", "resume" or "skip"
    result: float | None = None  # reported again when skipping


def fingerprint(cfg: DictConfig) -> str:
    plain = OmegaConf.to_container(cfg, resolve=False)
    for key in RESTART_KEYS:
        plain.pop(key, None)
    return hashlib.sha256(json.dumps(plain, sort_keys=True, default=str).encode()).hexdigest()[:16]


def previous_attempt(cfg: DictConfig, output_dir: Path, metric: str) -> Attempt:
    """What to do with this multirun job, given what its directory holds; records this attempt."""
    job, now = output_dir / "job.json", fingerprint(cfg)
    if job.is_file():
        before = read_data(job, json.loads, dict).get("config")
        if before != now:
            raise ConfigError(f"{output_dir} holds a job with another config (fingerprint {before}, now {now}); "
                              "re-run a sweep with the very same command, or give a new hydra.sweep.dir")
    metrics, error = output_dir / "metrics.json", output_dir / "error.txt"
    last = output_dir / "checkpoints" / "last.ckpt"
    # a skipped job's directory stays as it was: the notice goes to the console, not its log file
    if metrics.is_file() and job.is_file():
        print(f"job already finished in {output_dir}: skipped", flush=True)
        best = read_data(metrics, json.loads, dict).get(f"{metric}_best")
        return Attempt("skip", float(best) if isinstance(best, (int, float)) else float("nan"))
    if error.is_file() and not OmegaConf.select(cfg, "sweep.rerun_failed", default=False):
        print(f"job failed before ({error}): skipped; sweep.rerun_failed=true runs it again", flush=True)
        return Attempt("skip", float("nan"))
    output_dir.mkdir(parents=True, exist_ok=True)
    job.write_text(json.dumps({"config": now}) + "\n")
    error.unlink(missing_ok=True)
    if last.is_file() and cfg.get("ckpt_path") in (None, ""):
        log.info("job was interrupted: resuming from %s", last)
        return Attempt("resume")
    return Attempt("run")


def sweeper_settings() -> dict | None:
    """What a trial's job needs of the Optuna sweeper's settings (storage, study, pruner), or None
    outside a multirun of it. Read from the job's own Hydra config, key by key (the sampler's
    settings may interpolate keys of the task config, which the Hydra node alone cannot resolve)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    sweeper = HydraConfig.get().sweeper
    if not str(sweeper.get("_target_", "")).endswith("cifar_ft.optuna_sweeper.OptunaSweeper"):
        return None
    args = sweeper.get("pruner_args")
    return {"storage": sweeper.storage, "study_name": sweeper.study_name, "pruner": sweeper.get("pruner", "none"),
            "pruner_args": OmegaConf.to_container(args, resolve=True) if args is not None else {}}


def plan_job(cfg: DictConfig) -> JobPlan:
    """This multirun job's plan (the `JobPlan` contract): skip, resume, and a trial's pruning callbacks."""
    from cifar_ft.sweeps.trial import trial_callbacks

    attempt = previous_attempt(cfg, Path(cfg.paths.output_dir), cfg.optimized_metric)
    if attempt.action == "skip":
        return JobPlan(skip=True, result=attempt.result)
    output_dir = Path(cfg.paths.output_dir)
    return JobPlan(resume=attempt.action == "resume",
                   callbacks=tuple(trial_callbacks(sweeper_settings(), cfg.optimized_metric)),
                   sweep_dir=str(output_dir.parent), job=int(output_dir.name) if output_dir.name.isdigit() else None)
