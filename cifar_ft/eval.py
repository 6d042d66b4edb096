"""`python -m cifar_ft.eval ckpt_path=PATH [data=... data.root=...]`: test a checkpoint."""
from __future__ import annotations

import logging
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig, open_dict

from cifar_ft.artifacts import git_commit, to_float_dict, write_metrics
from cifar_ft.cli import hydra_entry, print_config, report_errors, trainer_settings
from cifar_ft.errors import ConfigError
from cifar_ft.module import ImageClassifier
from cifar_ft.plots import write_test_predictions

log = logging.getLogger("cifar_ft")


def read_checkpoint(path: str) -> dict:
    """One of our checkpoints (model hyperparameters checked), loaded on the CPU."""
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path!r}: no such checkpoint file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - truncated or foreign files raise many types
        raise ConfigError(f"ckpt_path={path!r} cannot be read as a checkpoint ({type(exc).__name__}: {exc})") from exc
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or "backbone" not in hparams:
        raise ConfigError(f"ckpt_path={path!r} is not a cifar_ft checkpoint (no model hyperparameters)")
    return ckpt


def checkpoint_hparams(path: str) -> dict:
    """The model hyperparameters stored in one of our checkpoints."""
    return dict(read_checkpoint(path)["hyper_parameters"])


def check_classes(ckpt_names: list[str], data_names: list[str], path: str) -> None:
    if list(ckpt_names) != list(data_names):
        raise ConfigError(f"checkpoint {path!r} was trained on {len(ckpt_names)} classes {list(ckpt_names)} "
                          f"but the data set has {len(data_names)} classes {list(data_names)}")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    hparams = checkpoint_hparams(cfg.ckpt_path)
    with open_dict(cfg):  # the checkpoint decides how images are prepared
        for key in ("input_size", "mean", "std"):
            cfg.model[key] = hparams[key]
    print_config(cfg)
    datamodule = instantiate(cfg.data)
    check_classes(hparams["class_names"], datamodule.class_names, cfg.ckpt_path)
    model = ImageClassifier.load_from_checkpoint(cfg.ckpt_path, map_location="cpu", pretrained=False,
                                                 compile=False, weights_only=False)
    bar = [RichProgressBar()] if cfg.trainer.get("enable_progress_bar", True) else []
    trainer = instantiate(cfg.trainer, logger=False, callbacks=bar,
                          **trainer_settings(cfg.trainer))
    trainer.test(model, datamodule=datamodule)
    metrics = {k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")}
    metrics.update({"ckpt_path": str(Path(cfg.ckpt_path).resolve()), "num_test_images":
                    len(datamodule.splits["test"]), "git_commit": git_commit()})
    if trainer.is_global_zero:
        out = write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        if model.test_predictions is not None:
            write_test_predictions(out.parent / "test_predictions.csv", model.test_predictions, model.class_names)
        log.info("Wrote %s", out)
    return metrics


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval")
def main(cfg: DictConfig) -> None:
    report_errors(evaluate, cfg)


if __name__ == "__main__":
    hydra_entry(main)
