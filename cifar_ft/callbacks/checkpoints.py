"""A run's two checkpoints, as Lightning's `ModelCheckpoint`s: `checkpoints/best-epochNNN.ckpt` (the best
epoch by the run's optimized metric, tested at the end) and `checkpoints/last.ckpt` (after every epoch, or
every N optimizer steps; what `ckpt_path=last` resumes). Where they go and what `best` means are the run's
(`paths.output_dir`, `optimized_metric`, `optimized_mode`), supplied when the callbacks are built."""
from __future__ import annotations

from lightning.pytorch.callbacks import ModelCheckpoint


def checkpoints(dirpath: str, monitor: str, mode: str, save_top_k: int = 1,
                every_n_train_steps: int | None = None) -> list[ModelCheckpoint]:
    """[best, last]; a resumed run overwrites its files, never writes `*-v1.ckpt` beside them."""
    best = ModelCheckpoint(dirpath=dirpath, filename="best-epoch{epoch:03d}", monitor=monitor, mode=mode,
                           save_top_k=save_top_k, save_last=False, auto_insert_metric_name=False,
                           enable_version_counter=False)
    last = ModelCheckpoint(dirpath=dirpath, filename="last", monitor=None, save_top_k=1,
                           every_n_train_steps=every_n_train_steps, enable_version_counter=False)
    return [best, last]
