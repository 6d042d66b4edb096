"""Checkpoints that survive being killed, and runs that checkpoint when told to stop.

- `AtomicCheckpointIO`: every checkpoint is written to a temporary file in the same directory,
  flushed to disk, then renamed over the target. A process killed at any moment (SIGKILL, power
  loss) leaves either the previous file or the new one, never a truncated one.
- `StopOnSignal`: SIGTERM (a cluster pre-empting the job) or SIGINT (Ctrl+C) finishes the current
  optimizer step, writes `last.ckpt` and ends the run; `ckpt_path=last` continues it mid-epoch.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into `.<name>.tmp-<pid>`, fsync, `os.replace` onto the target, fsync the directory."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote file systems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by writers that were killed
            stale.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry reaches the disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StopOnSignal(L.Callback):
    """On SIGTERM or SIGINT: stop after the current step, save `<dirpath>/last.ckpt`, exit.

    The handlers only set a flag (no I/O or collectives inside a signal handler); at the end of every
    training batch the ranks agree whether any of them was signalled (one tiny all-reduce under DDP),
    so all stop at the same step, save one consistent checkpoint together and raise
    `SIGTERMException`, carrying `checkpoint`, `signal` and `step` for the one-line report of
    `cifar_ft.cli`. A second signal stops at once (KeyboardInterrupt), without a checkpoint.
    During training these handlers replace Lightning's SIGTERM handler, whose broadcast from inside
    the handler can deadlock DDP ranks that are signalled at different moments."""

    SIGNALS = ("SIGTERM", "SIGINT")

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._signal: str | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signal = None
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        self._signal = signal.Signals(signum).name

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        stop = self._signal is not None
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        trainer.save_checkpoint(self.path)  # every rank: the strategy writes once, then all sync
        name = self._signal or "SIGTERM"  # a rank that was not signalled itself follows the others
        log.warning("%s at epoch %d, step %d: saved %s", name, trainer.current_epoch, trainer.global_step,
                    self.path)
        exc = SIGTERMException(128 + getattr(signal, name))
        exc.checkpoint, exc.signal, exc.step = str(self.path), name, trainer.global_step
        raise exc

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if threading.current_thread() is threading.main_thread():
            for number, handler in self._previous.items():
                signal.signal(number, handler)
        self._previous = {}
