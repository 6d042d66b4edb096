"""SIGTERM (a cluster pre-empting the job) or SIGINT (Ctrl+C): finish the current optimizer step,
write `last.ckpt` and end the run; `ckpt_path=last` then continues it mid-epoch, exactly."""
from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class StopOnSignal(L.Callback):
    """On SIGTERM or SIGINT: stop after the current step, save `<dirpath>/last.ckpt`, exit.

    The handlers only set a flag (no I/O or collectives inside a signal handler); at the end of every
    training batch the ranks agree whether any of them was signalled (one tiny all-reduce under DDP),
    so all stop at the same step, save one consistent checkpoint together and raise
    `SIGTERMException`, carrying `checkpoint`, `signal` and `step` for the one-line report of
    `cifar_ft.runs.entry`. A second signal stops at once (KeyboardInterrupt), without a checkpoint.
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
