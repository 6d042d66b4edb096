"""`python -m cifar_ft.train`: seed, data, model, callbacks, loggers, trainer, fit, test, artifacts."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ProgressBar
from omegaconf import DictConfig, OmegaConf

from cifar_ft.artifacts import (
    confusion_figure,
    ensure_writable,
    git_commit,
    to_float_dict,
    write_metrics,
)
from cifar_ft.cli import (
    hydra_entry,
    print_config,
    register_resolvers,
    report_errors,
    resolve_ckpt,
    trainer_settings,
)
from cifar_ft.errors import ConfigError
from cifar_ft.plots import (
    per_class_rows,
    plot_curves,
    write_per_class,
    write_test_predictions,
)

log = logging.getLogger("cifar_ft")
register_resolvers()  # before Hydra resolves any config of this process (also joblib workers)


def build_callbacks(cfg: DictConfig, progress_bar: bool = True) -> list[L.Callback]:
    """Instantiate every `callbacks.<name>` entry that is not null (no progress bar if disabled)."""
    callbacks = [instantiate(c) for c in (cfg or {}).values() if c is not None]
    return [c for c in callbacks if progress_bar or not isinstance(c, ProgressBar)]


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(c) for c in (cfg or {}).values() if c is not None]


def log_hparams(loggers: list, cfg: DictConfig, metric_names: list[str]) -> None:
    """Flattened config into TensorBoard's HPARAMS tab, tied to the metrics that summarise a run."""
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(flat, metrics={name: float("nan") for name in metric_names})


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def train(cfg: DictConfig) -> float | None:
    """One run; returns `cfg.optimized_metric` (best value seen) for sweepers."""
    start = time.time()
    print_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ensure_writable(output_dir)
    datamodule = instantiate(cfg.data)
    model = instantiate(cfg.model, num_classes=datamodule.num_classes, class_names=datamodule.class_names,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler))
    callbacks = build_callbacks(cfg.get("callbacks"), cfg.trainer.get("enable_progress_bar", True))
    loggers = build_loggers(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                     **trainer_settings(cfg.trainer))
    log_hparams(loggers, cfg, [cfg.optimized_metric, "test/acc", "test/f1_macro"])
    fit_start = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=resolve_ckpt(resume_target(cfg), output_dir),
                weights_only=False)  # our own checkpoints: optimizer groups and callback state
    fit_time = time.time() - fit_start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    best_score = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
    trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=False)
    metrics = to_float_dict(trainer.callback_metrics)
    metrics = {k: v for k, v in metrics.items() if k.startswith("test/")}
    metrics.update(run_facts(cfg, trainer, start, best, best_score), fit_time_s=fit_time)
    if trainer.is_global_zero:
        write_metrics(output_dir / "metrics.json", metrics)
        log_test_figures(loggers, model, output_dir)
        log.info("Test: %s", {k: round(v, 4) for k, v in metrics.items() if k.count("/") == 1 and k[:5] == "test/"})
        log.info("Run directory: %s", output_dir)
    return metrics.get(f"{cfg.optimized_metric}_best")


def resume_target(cfg: DictConfig) -> str | None:
    """`resume=true` is `ckpt_path=last`; both at once must not disagree."""
    ckpt_path = cfg.get("ckpt_path")
    if not cfg.get("resume"):
        return ckpt_path
    if ckpt_path not in (None, "", "last"):
        raise ConfigError(f"resume=true resumes checkpoints/last.ckpt but ckpt_path={ckpt_path!r} names another; "
                          "set only one of them")
    return "last"


def run_facts(cfg: DictConfig, trainer: L.Trainer, start: float, best: str, best_score) -> dict:
    """Provenance and cost figures that go into metrics.json next to the test metrics."""
    facts: dict = {"seed": cfg.seed, "wall_time_s": time.time() - start, "epochs": trainer.current_epoch,
                   "global_step": trainer.global_step, "git_commit": git_commit(), "best_ckpt": best or None}
    if best_score is not None:
        facts[f"{cfg.optimized_metric}_best"] = float(best_score)
    for cb in trainer.callbacks:
        if getattr(cb, "last_images_per_sec", None):
            facts["train/images_per_sec"] = cb.last_images_per_sec
        if getattr(cb, "last_mfu", None):
            facts.update({"train/mfu": cb.last_mfu, "train/flops_per_image": cb.flops_per_image,
                          "device_bf16_matmul_flops": cb.peak_flops})
    return facts


def log_test_figures(loggers: list, model, output_dir: Path) -> None:
    """confusion_matrix.png, per_class.csv and curves.png in the run directory, and in TensorBoard."""
    confusion = getattr(model, "confusion", None)
    if confusion is None:
        return
    rows = per_class_rows(confusion, model.class_names)
    write_per_class(output_dir / "per_class.csv", rows)
    if model.test_predictions is not None:
        write_test_predictions(output_dir / "test_predictions.csv", model.test_predictions, model.class_names)
    figure = confusion_figure(confusion, model.class_names)
    figure.savefig(output_dir / "confusion_matrix.png", dpi=110)
    table = "| class | precision | recall | f1 | support |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {r['class']} | {r['precision']} | {r['recall']} | {r['f1']} | {r['support']} |" for r in rows)
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            experiment.add_figure("test/confusion_matrix", figure)
            experiment.add_text("test/per_class", table)
            experiment.flush()
    plot_curves(output_dir / "tensorboard", output_dir / "curves.png")


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return report_errors(train, cfg)


if __name__ == "__main__":
    hydra_entry(main)

