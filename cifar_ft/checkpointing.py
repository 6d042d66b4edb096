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
from lightning.pytorch.trainer.states import TrainerFn
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

    Lightning already turns SIGTERM into a stop at the next batch boundary on every rank; SIGINT is
    routed the same way (a second Ctrl+C interrupts at once). The raised exception carries
    `checkpoint` and `signal` for the one-line report of `cifar_ft.cli`."""

    def __init__(self, dirpath: str, filename: str = "last") -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self._signal: str | None = None
        self._previous_sigint: Any = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._signal = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self._signal == "SIGINT":
            raise KeyboardInterrupt  # asked twice: stop now, without a checkpoint
        self._signal = "SIGINT"
        log.warning("SIGINT: finishing this step, then saving %s (Ctrl+C again to stop at once)", self.path)
        os.kill(os.getpid(), signal.SIGTERM)  # Lightning's SIGTERM path: stops all ranks at one step

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, SIGTERMException) or trainer.state.fn != TrainerFn.FITTING:
            return
        trainer.save_checkpoint(self.path)
        exception.checkpoint = str(self.path)
        exception.signal = self._signal or "SIGTERM"
        exception.step = trainer.global_step
        log.warning("%s at epoch %d, step %d: saved %s", exception.signal, trainer.current_epoch,
                    trainer.global_step, self.path)

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self._previous_sigint is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None
