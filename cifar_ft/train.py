"""`python -m cifar_ft.train`: seed, data, model, callbacks, loggers, trainer, fit, test, artifacts."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from cifar_ft.runs.artifacts import ensure_writable, run_facts, to_float_dict, write_metrics, write_test_artifacts
from cifar_ft.runs.build import build_callbacks, build_loggers, build_trainer, log_hparams, print_config
from cifar_ft.runs.checkpoints import resolve_ckpt, resume_target
from cifar_ft.runs.entry import command, in_multirun, register_resolvers
from cifar_ft.runs.sweep_jobs import previous_attempt
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")
register_resolvers()  # before Hydra resolves any config of this process (also joblib workers)


def train(cfg: DictConfig) -> float | None:
    """One run; returns `cfg.optimized_metric` (best value seen) for sweepers."""
    start = time.time()
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)
    resume = bool(cfg.get("resume", False))
    if in_multirun():  # a re-run sweep: skip finished jobs, resume interrupted ones
        attempt = previous_attempt(cfg, output_dir, cfg.optimized_metric)
        if attempt.action == "skip":
            return attempt.result
        resume = resume or attempt.action == "resume"
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")  # data problems (missing folders, batch larger than the data) come first
    L.seed_everything(cfg.seed, workers=True)
    trust = bool(cfg.get("trust_checkpoint", False))
    model = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
                        trust_weights=trust)
    print_config(cfg)
    loggers = build_loggers(cfg.get("logger"))
    trainer = build_trainer(cfg.trainer, build_callbacks(cfg.get("callbacks"),
                                                         cfg.trainer.get("enable_progress_bar", True)), loggers)
    log_hparams(loggers, cfg, [cfg.optimized_metric, "test/acc", "test/f1_macro"])
    ckpt_path = resolve_ckpt(resume_target(cfg.get("ckpt_path"), resume), output_dir, trust)
    fit_start = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=not trust)
    fit_time = time.time() - fit_start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True)
    metrics = {k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")}
    metrics.update(run_facts(trainer, cfg.seed, start, best, best_score, cfg.optimized_metric), fit_time_s=fit_time,
                   tta=model.hparams.tta)
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        write_test_artifacts(loggers, model.confusion, model.test_predictions, model.class_names, output_dir)
        log.info("Test: %s", {k: round(v, 4) for k, v in metrics.items() if k.count("/") == 1 and k[:5] == "test/"})
        log.info("Run directory: %s", output_dir)
    return metrics.get(f"{cfg.optimized_metric}_best")


main = command(train, "train")

if __name__ == "__main__":
    main()
