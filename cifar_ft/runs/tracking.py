"""A training run's trackers (`logger=`, cifar_ft.trackers): checked first, built with the run's tags and the
ids a resumed run continues, given the flattened config as params, and the run's files at the end.

When each function runs (`runs/fit.py`): `tracker_options` + `check_trackers` before the data is set up;
`start` once the model and data exist; `end` after the test artifacts are written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_ft.contracts import JobPlan
from cifar_ft.exports.model_card import model_card
from cifar_ft.models.options import flat_hparams
from cifar_ft.reports.artifacts import git_commit
from cifar_ft.runs.stored import TRACKERS_KEY
from cifar_ft.trackers.build import (
    RunInfo,
    build_loggers,
    check_trackers,
    finish_trackers,
    tracker_ids,
    tracker_options,
)


def options_of(cfg: DictConfig) -> dict[str, Any]:
    """The chosen trackers' options, checked (extras installed, servers answering) before the run builds."""
    node = cfg.get("logger")
    options = tracker_options(OmegaConf.to_container(node, resolve=True) if node is not None else None)
    check_trackers(options)
    return options


def resume_ids(ckpt_path: str | None) -> dict[str, str]:
    """The tracker runs a checkpoint's run logged to (none for a checkpoint without them)."""
    if not ckpt_path:
        return {}
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a legacy or trusted pickle: it has no tracker ids to continue
        return {}
    ids = ckpt.get(TRACKERS_KEY) if isinstance(ckpt, dict) else None
    return dict(ids) if isinstance(ids, dict) else {}


class KeepTrackerIds(L.Callback):
    """Writes the trackers' run ids into every checkpoint, so `ckpt_path=...` continues those runs."""

    def __init__(self, options: dict[str, Any], loggers: list) -> None:
        self.options, self.loggers = options, loggers

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        if ids := tracker_ids(self.options, self.loggers):
            checkpoint[TRACKERS_KEY] = ids


def start(cfg: DictConfig, options: dict[str, Any], model, provenance: dict, ckpt_path: str | None,
          plan: JobPlan) -> tuple[list, list[L.Callback]]:
    """The run's loggers (tagged; continuing the checkpoint's tracker runs), and the callback that keeps
    their ids in checkpoints. Trackers other than TensorBoard get the flattened config as params now (a
    run that crashes still has them); TensorBoard gets them with the results (its HPARAMS tab)."""
    from cifar_ft.runs.build import flatten

    output_dir = Path(cfg.paths.output_dir)
    hp = flat_hparams(dict(model.hparams))
    tags = {"strategy": model.strategy.name, "backbone": str(hp.get("backbone")), "seed": str(cfg.seed),
            "git_commit": git_commit() or "unknown",
            "data_fingerprint": str(provenance.get("test_fingerprint") or provenance.get("fingerprint") or "")}
    run = RunInfo(output_dir, tags=tags, resume_ids=resume_ids(ckpt_path),
                  sweep_dir=Path(plan.sweep_dir) if plan.sweep_dir else None, job=plan.job)
    loggers = build_loggers(options, run)
    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    for name, logger in zip(options, loggers):
        if name != "tensorboard":
            logger.log_hyperparams(flat)
    return loggers, ([KeepTrackerIds(options, loggers)] if options else [])


def end(options: dict[str, Any], loggers: list, model, output_dir: Path, metrics: dict, objective_key: str,
        state: str = "finished") -> None:
    """After the test (or a search's pruning): the run's files, its model card, its objective and state
    (finished | pruned) to each tracker."""
    if not any(name != "tensorboard" for name in options):
        return
    best = metrics.get("best_ckpt") or ""
    card = (model_card(best, flat_hparams(dict(model.hparams)), "checkpoint", float(model.temperature))
            if best and state == "finished" else "")
    facts = {"model_card": card, "best_ckpt": best, "objective": metrics.get(f"{objective_key}_best"),
             "state": state}
    finish_trackers(options, loggers, output_dir, facts)
