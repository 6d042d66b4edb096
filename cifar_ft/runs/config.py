"""The run's own options: the top-level keys of `conf/train.yaml` (the config groups' nodes have their
own schemas beside their code). Light: registries of choices are looked up when a value is checked."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from cifar_ft.contracts import MONITORABLE
from cifar_ft.schema import knob, schema

CALIBRATIONS = ("none", "temperature")
# keys that moved (CHANGELOG.md): the old key on a command line is one line naming its replacement
MOVED = {"frozen_epochs": "strategy.frozen_epochs", "frozen_groups": "strategy.frozen_groups",
         "frozen_precision": "strategy.frozen_precision", "callbacks.freeze.freeze_epochs": "strategy.frozen_epochs",
         "callbacks.freeze.train_bn": "strategy.bn_statistics (true: adapt, false: trained)",
         "rerun_failed": "sweep.rerun_failed", "resume": "ckpt_path (resume=true: ckpt_path=last)",
         "model.tta": "tta", "callbacks.model_checkpoint.save_top_k": "callbacks.checkpoints.save_top_k",
         "callbacks.last_checkpoint.every_n_train_steps": "callbacks.checkpoints.every_n_train_steps"}
# keys that are gone, and what does their job
GONE = {"print_config": "every run saves its whole resolved config in <run dir>/.hydra/resolved.yaml, and "
                        "`python -m cifar_ft.train ... --cfg job --resolve` prints it without running",
        "callbacks.progress_bar.refresh_rate": "the bar refreshes on the logging steps (trainer.log_every_n_steps)",
        "callbacks.stop_on_signal.dirpath": "last.ckpt goes to the run's checkpoints/ (hydra.run.dir)",
        "trainer.default_root_dir": "the run writes into its run directory (hydra.run.dir=DIR)",
        "callbacks.model_checkpoint": "callbacks.checkpoints (save_top_k, every_n_train_steps); where checkpoints "
                                      "go and what `best` means follow hydra.run.dir and optimized_metric",
        "callbacks.last_checkpoint": "callbacks.checkpoints.every_n_train_steps",
        **{f"logger.tensorboard.{key}": "TensorBoard writes to <run dir>/tensorboard (hydra.run.dir=DIR)"
           for key in ("save_dir", "name", "version", "default_hp_metric")}}


def tta_names() -> list[str]:
    from cifar_ft.models.calibration import TTA

    return list(TTA)


@dataclass
class SweepOptions:
    """What a job of a multirun or search does about the sweep's earlier attempts."""

    rerun_failed: bool = knob(False, "a re-run into the same hydra.sweep.dir also runs jobs (trials) that failed")


@schema("run", "train")
@dataclass
class TrainOptions:
    """`python -m cifar_ft.train`: one run, or a job of a sweep."""

    task_name: str = knob("train", "names the run's folder: outputs/<task_name>/<time>")
    seed: int = knob(42, "everything random: weights of the head, splits, augmentation, order", ge=0, lt=2**32)
    ckpt_path: str | None = knob(None, "resume from this checkpoint, or `last` (with hydra.run.dir=<run dir>)")
    tta: str = knob("none", "test-time augmentation of the final test (saved in checkpoints)", choices=tta_names)
    calibrate: str = knob("none", "temperature: fit one temperature on the validation split before the test "
                                  "(stored; eval, predict and exports apply it)", choices=CALIBRATIONS)
    trust_checkpoint: bool = knob(False, "true: also load files whose pickle runs code (only files you trust)")
    optimized_metric: str = knob("val/acc", "what train() returns to sweepers and what `best` means for "
                                            "checkpoints", choices=MONITORABLE)
    optimized_mode: str = knob("${metric_mode:${optimized_metric}}", "max | min: what `best` means for it",
                               choices=("max", "min"))
    sweep: SweepOptions = dataclasses.field(default_factory=lambda: SweepOptions())
    # the config groups' nodes (each checked against its own schema)
    data: Any = None
    model: Any = None
    optimizer: Any = None
    scheduler: Any = None
    trainer: Any = None
    callbacks: Any = None
    logger: Any = None
    paths: Any = None
    strategy: Any = None
    robustness: Any = None
