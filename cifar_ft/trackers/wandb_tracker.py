"""`logger=wandb`: Lightning's WandbLogger, offline unless an API key is configured. Offline, the run's W&B
files live in `<run dir>/wandb/` and the run ends with the one line that uploads them later (`wandb sync`);
with a key and network it logs online. In a sweep the jobs share a W&B group named after the sweep."""
from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path

from cifar_ft.errors import ConfigError
from cifar_ft.trackers.config import WandbOptions

log = logging.getLogger("cifar_ft")
FILES = ("*.png", "metrics.json", "per_class.csv", "robustness.csv")


def check(options: WandbOptions) -> None:
    try:
        import wandb  # noqa: F401
    except ImportError:
        raise ConfigError("logger=wandb needs Weights & Biases, which is not installed: pip install -e '.[wandb]'"
                          ) from None


def has_key() -> bool:
    """An API key is configured: WANDB_API_KEY, or `wandb login`'s entry in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def mode(options: WandbOptions) -> str:
    return ("online" if has_key() else "offline") if options.mode == "auto" else options.mode


def build(options: WandbOptions, run):
    from lightning.pytorch.loggers import WandbLogger

    resume = run.resume_ids.get("wandb")
    return WandbLogger(project=options.project, entity=options.entity, save_dir=str(run.output_dir),
                       mode=mode(options), id=resume, resume="allow" if resume else None,
                       name=run.output_dir.name, group=run.sweep_dir.name if run.sweep_dir is not None else None,
                       tags=[f"{k}:{v}"[:64] for k, v in run.tags.items()])  # the config: log_hyperparams


def run_id(logger) -> str | None:
    return str(logger.version) if logger.version else None


def finish(options: WandbOptions, logger, output_dir: Path, facts: dict) -> None:
    import wandb

    experiment = logger.experiment
    files = [p for pattern in FILES for p in sorted(output_dir.glob(pattern))]
    if files:  # one artifact of the run's files (figures, metrics.json, tables)
        artifact = wandb.Artifact(f"run-files-{experiment.id}", type="run-files")
        for path in files:
            artifact.add_file(str(path))
        experiment.log_artifact(artifact)
    for key in ("objective", "state"):
        if facts.get(key) is not None:
            experiment.summary[key] = facts[key]
    if mode(options) == "offline":
        folder = Path(experiment.dir).parent
        log.info("W&B run %s is offline in %s; upload it with: wandb sync %s", logger.version, folder, folder)
