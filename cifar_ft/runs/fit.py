"""Fitting and testing one run: seed, data, model, callbacks, loggers, trainer, fit, test, artifacts.

The training stack (Lightning, torch, the data and model stack) is imported by this module alone, when a
run starts (`cifar_ft.train` imports it then): `python -m cifar_ft.train --help` and a one-line config
error do not pay for it."""
from __future__ import annotations

import logging
import time
import warnings
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from cifar_ft.callbacks.temperature import TemperatureScaling
from cifar_ft.contracts import JobPlan
from cifar_ft.reports.artifacts import run_facts, to_float_dict, write_metrics, write_test_artifacts
from cifar_ft.reports.explain import write_mistakes
from cifar_ft.reports.robustness import after_test
from cifar_ft.runs import tracking
from cifar_ft.runs.build import (
    build_callbacks,
    build_trainer,
    log_hparams,
    print_config,
    run_supplied,
    strategy_and_schedule,
)
from cifar_ft.runs.checkpoints import check_resumable, refuse_finished, resolve_ckpt
from cifar_ft.runs.provenance import RecordData, record
from cifar_ft.runs.run_dir import resume_target
from cifar_ft.runs.validate import short_run_warnings

log = logging.getLogger("cifar_ft")
# Frozen backbone modules (and their BatchNorm statistics) are in eval mode on purpose: the freeze
# schedule puts them there (callbacks/freeze.py); Lightning's notice reads like a bug to users.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode at the start of training")


def hparam_metrics(cfg: DictConfig) -> list[str]:
    """What summarises a run in TensorBoard's HPARAMS tab."""
    return [cfg.optimized_metric, "test/acc", "test/f1_macro", "test/ece", "test/nll", "model/trainable_pct",
            "model/peak_memory_mb"]


def fit_and_test(cfg: DictConfig, start: float, plan: JobPlan, corruptions) -> float | None:
    """Fit and test one run of a validated config (`cifar_ft.train.train`); `plan`: what its sweep says
    (`contracts.JobPlan`: resume, a trial's pruning callbacks); `corruptions`: the checked robustness
    settings or None. Returns the best optimized metric."""
    resume, pruning = plan.resume, list(plan.callbacks)
    output_dir = Path(cfg.paths.output_dir)
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt_path = resolve_ckpt(resume_target(cfg.get("ckpt_path"), resume), output_dir, trust)
    if ckpt_path is not None:
        refuse_finished(ckpt_path, output_dir, cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps"))
    trackers = tracking.options_of(cfg)  # a missing extra or a silent server: one line, before anything is built
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # data problems (missing folders, batch larger than the data) come first
    calibrate = cfg.get("calibrate") == "temperature"  # a fit always has a validation split (datamodule)
    for warning in short_run_warnings(cfg, datamodule.split_size("train")):
        log.warning(warning)
    L.seed_everything(cfg.seed, workers=True)
    strategy, schedule = strategy_and_schedule(cfg.strategy)
    model = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names, tta=cfg.tta,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
                        strategy=instantiate(strategy), trust_weights=trust)
    if ckpt_path is not None:  # before the config print and fit: a file fit cannot load is one line
        check_resumable(ckpt_path, model, trust)
    print_config(cfg)
    callbacks = build_callbacks(cfg.get("callbacks"), cfg.trainer.get("enable_progress_bar", True),
                                run_supplied(cfg, schedule))
    provenance = record(cfg.data, datamodule)  # in every checkpoint: eval tests these held-out images
    loggers, keep_ids = tracking.start(cfg, trackers, model, provenance, ckpt_path, plan)
    scaling = [TemperatureScaling()] if calibrate else []  # fitted at the start of the final test
    trainer = build_trainer(cfg.trainer, [*callbacks, *pruning, *scaling, RecordData(provenance), *keep_ids],
                            loggers, str(output_dir))
    fit_start = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not trust)
    fit_time = time.time() - fit_start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    pruned_at = next((p.pruned_at for p in pruning if p.pruned_at is not None), None)
    if pruned_at is not None:  # stopped by the search's pruner: no test, the run directory stays
        result = _pruned(trainer, cfg, output_dir, start, best, best_score, pruned_at)
        if trainer.is_global_zero:
            facts = {"best_ckpt": best, f"{cfg.optimized_metric}_best": result}
            tracking.end(trackers, loggers, model, output_dir, facts, cfg.optimized_metric, state="pruned")
        return result
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    metrics = {k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")}
    metrics.update(run_facts(trainer, cfg.seed, start, best, best_score, cfg.optimized_metric), fit_time_s=fit_time,
                   tta=model.hparams.tta, strategy=model.strategy.name,
                   calibrate=cfg.get("calibrate") or "none",
                   **({"test_split_fingerprint": provenance["test_fingerprint"]} if "test" in provenance else {}))
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        write_test_artifacts(loggers, model.confusion, model.test_predictions, model.class_names, output_dir)
        write_mistakes(model, datamodule, model.test_predictions, model.class_names, output_dir / "mistakes.png")
        log.info("Test: %s", {k: round(v, 4) for k, v in metrics.items() if k.count("/") == 1 and k[:5] == "test/"})
    log_hparams(loggers, cfg, {k: metrics.get(f"{k}_best", metrics.get(k)) for k in hparam_metrics(cfg)})
    if corruptions is not None:  # the test's results are written already: a stop here keeps them
        metrics.update(after_test(corruptions, trainer, model, datamodule, output_dir))
        if trainer.is_global_zero:
            write_metrics(output_dir / "metrics.json", metrics)
    if trainer.is_global_zero:
        tracking.end(trackers, loggers, model, output_dir, metrics, cfg.optimized_metric)
        log.info("Run directory: %s", output_dir)
    return metrics.get(f"{cfg.optimized_metric}_best")


def _pruned(trainer, cfg: DictConfig, output_dir: Path, start: float, best: str, best_score, epoch: int) -> float:
    metrics = {**run_facts(trainer, cfg.seed, start, best, best_score, cfg.optimized_metric), "pruned": True,
               "pruned_at_epoch": epoch}
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        log.info("Pruned by the search after epoch %d; run directory: %s", epoch, output_dir)
    return metrics.get(f"{cfg.optimized_metric}_best", float("nan"))
