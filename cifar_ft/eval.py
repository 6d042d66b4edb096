"""`python -m cifar_ft.eval ckpt_path=PATH [data=... data.root=...]`: test a checkpoint, by default on its
run's own held-out test split (runs/provenance.py); given data must not overlap the run's training images."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from cifar_ft.callbacks.progress import progress_bar
from cifar_ft.callbacks.stop_on_signal import StopOnSignal
from cifar_ft.data.registry import build_data
from cifar_ft.models.options import flat_hparams
from cifar_ft.reports.artifacts import git_commit, to_float_dict, write_metrics, write_test_predictions
from cifar_ft.reports.explain import write_mistakes
from cifar_ft.reports.figures import reliability_figure
from cifar_ft.reports.robustness import after_test, robustness_config
from cifar_ft.runs.build import build_trainer, print_config
from cifar_ft.runs.checkpoints import check_classes, choose_temperature, load_classifier, read_checkpoint
from cifar_ft.runs.entry import command
from cifar_ft.runs.provenance import check_test_split, run_data_config
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    validate_config(cfg)
    corruptions = robustness_config(cfg.get("robustness"))
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = read_checkpoint(cfg.ckpt_path, trust)
    hparams = flat_hparams(ckpt["hyper_parameters"])  # either form: grouped, or older flat
    given = cfg.get("data") is not None
    with open_dict(cfg):  # the checkpoint decides how images are prepared, and by default which images
        for key in ("input_size", "mean", "std"):
            cfg.model[key] = hparams[key]
        # FixRes: the test size given here, else the checkpoint's (training's input size when it has none)
        cfg.model.test_input_size = cfg.model.get("test_input_size") or hparams.get("test_input_size")
        if given:
            cfg.data.eval_input_size = cfg.model.test_input_size
    datamodule = instantiate(cfg.data) if given else _run_datamodule(cfg, ckpt)
    check_classes(hparams["class_names"], datamodule.class_names, cfg.ckpt_path)
    split = check_test_split(ckpt, datamodule, given, bool(cfg.get("allow_train_overlap", False)))
    model = load_classifier(cfg.ckpt_path, trust, ckpt)
    if cfg.get("tta"):
        model.hparams.tta = cfg.tta
    temperature = choose_temperature(model, cfg.get("calibrate"), cfg.ckpt_path)
    print_config(cfg)
    bar = [progress_bar()] if cfg.trainer.get("enable_progress_bar", True) else []  # lines in a log file
    stop = StopOnSignal(str(Path(cfg.paths.output_dir) / "checkpoints"))  # SIGTERM: stop after the batch
    trainer: L.Trainer = build_trainer(cfg.trainer, [*bar, stop], [], str(cfg.paths.output_dir))
    trainer.test(model, datamodule=datamodule)
    metrics = {k: v for k, v in to_float_dict(trainer.callback_metrics).items() if k.startswith("test/")}
    metrics.update({"ckpt_path": str(Path(cfg.ckpt_path).resolve()), "tta": model.hparams.tta,
                    "temperature": temperature, "git_commit": git_commit(), **split})
    metrics.update(after_test(corruptions, trainer, model, datamodule, Path(cfg.paths.output_dir)))
    if trainer.is_global_zero:
        out = write_metrics(Path(cfg.paths.output_dir) / "metrics.json", metrics)
        rows = model.test_predictions  # index, label, prediction, confidence, p(label)
        if rows is not None:
            write_test_predictions(out.parent / "test_predictions.csv", rows, model.class_names)
            reliability_figure(rows[:, 3], rows[:, 1] == rows[:, 2]).savefig(out.parent / "reliability.png", dpi=110)
            write_mistakes(model, datamodule, rows, model.class_names, out.parent / "mistakes.png")
        log.info("Wrote %s", out)
    return metrics


def _run_datamodule(cfg: DictConfig, ckpt: dict):
    """The run's own data, rebuilt from the checkpoint's record: a registered data module and its options,
    checked as plain values and by the same rules as the command line's (never a stored `_target_`)."""
    name, options = run_data_config(ckpt, cfg.ckpt_path)
    options.update(batch_size=cfg.model.batch_size, eval_input_size=cfg.model.test_input_size)
    with open_dict(cfg):
        cfg.data = OmegaConf.create({"module": name, **options})
    validate_config(OmegaConf.create({"data": options}))
    return build_data(name, options)


main = command(evaluate, "eval")

if __name__ == "__main__":
    main()
