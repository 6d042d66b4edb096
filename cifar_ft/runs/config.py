"""The run's own options: the top-level keys of `conf/train.yaml` (the config groups' nodes have their
own schemas beside their code). Light: registries of choices are looked up when a value is checked."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cifar_ft.contracts import MONITORABLE
from cifar_ft.schema import knob, schema

CALIBRATIONS = ("none", "temperature")
# keys that moved (CHANGELOG.md): the old key on a command line is one line naming its replacement
MOVED = {"frozen_epochs": "strategy.frozen_epochs", "frozen_groups": "strategy.frozen_groups",
         "frozen_precision": "strategy.frozen_precision", "callbacks.freeze.freeze_epochs": "strategy.frozen_epochs",
         "callbacks.freeze.train_bn": "strategy.bn_statistics (true: adapt, false: trained)"}


def _tta() -> list[str]:
    from cifar_ft.models.calibration import TTA

    return list(TTA)


@schema("run", "train")
@dataclass
class TrainOptions:
    """`python -m cifar_ft.train`: one run, or a job of a sweep."""

    task_name: str = knob("train", "names the run's folder: outputs/<task_name>/<time>")
    seed: int = knob(42, "everything random: weights of the head, splits, augmentation, order", ge=0, lt=2**32)
    ckpt_path: str | None = knob(None, "resume from this checkpoint, or `last` (with hydra.run.dir=<run dir>)")
    resume: bool = knob(False, "true: the same as ckpt_path=last")
    rerun_failed: bool = knob(False, "a multirun re-run into the same hydra.sweep.dir also runs jobs that failed")
    tta: str = knob("none", "test-time augmentation of the final test (saved in checkpoints)", choices=_tta)
    calibrate: str = knob("none", "temperature: fit one temperature on the validation split before the test "
                                  "(stored; eval, predict and exports apply it)", choices=CALIBRATIONS)
    trust_checkpoint: bool = knob(False, "true: also load files whose pickle runs code (only files you trust)")
    print_config: str = knob("summary", "summary: one line per section | full: the whole resolved config",
                             choices=("summary", "full"))
    optimized_metric: str = knob("val/acc", "what train() returns to sweepers and what `best` means for "
                                            "checkpoints", choices=MONITORABLE)
    optimized_mode: str = knob("${metric_mode:${optimized_metric}}", "max | min: what `best` means for it",
                               choices=("max", "min"))
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
