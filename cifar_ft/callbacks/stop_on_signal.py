"""SIGTERM (a cluster pre-empting the job) or SIGINT (Ctrl+C): finish the current optimizer step (or
evaluation batch), write `last.ckpt` and end the run; `ckpt_path=last` then continues it, exactly."""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)


class StopOnSignal(L.Callback):
    """On SIGTERM or SIGINT: stop after the current step, save `<dirpath>/last.ckpt`, exit.

    The handlers only set a flag (no I/O or collectives inside a signal handler). A single process
    reads its flag after every step (a Python bool: free). Under DDP the ranks agree whether any of
    them was signalled only on agreement steps, which are logging steps (`trainer.log_every_n_steps`):
    one all-reduce of [signalled, seconds per step] (max over ranks), from which every rank derives
    the same next agreement step, the first logging step at least `max_delay_s` of training later
    (`agree_every_n_steps`: every N steps instead). So all ranks stop at the same step, save one
    consistent checkpoint together and raise `SIGTERMException`, carrying `checkpoint`, `signal` and
    `step` for the one-line report of `cifar_ft.runs.entry`. Worst case from signal to stop: about
    max(`max_delay_s`, `log_every_n_steps` steps), plus the checkpoint write. A
    second signal stops at once (KeyboardInterrupt), without a checkpoint. During training these
    handlers replace Lightning's SIGTERM handler, whose broadcast from inside the handler can
    deadlock DDP ranks that are signalled at different moments; and since they replace it, they also
    switch off the flag Lightning (2.6) broadcasts from rank 0 and reads back (`.item()`) before
    every training batch under DDP: a collective and a host sync per step, for a flag that our
    handlers never set.

    Phases without training steps stop within one batch too (under DDP: within `agree_every` = 8
    batches, where the ranks agree; every rank runs the same batches): the feature cache (via
    `stop_if_signalled`), the sanity check, validation and test. A stop during fit's validation saves
    `last.ckpt` recorded as "validation started, no batch done" (the metric state of a partial
    validation is not in a checkpoint), so `ckpt_path=last` runs that validation again from its first
    batch and the resumed run ends as the uninterrupted one. A stop during the test (after fit, or in
    `cifar_ft.eval`) has nothing to save: the run's checkpoints are already written."""

    SIGNALS = ("SIGTERM", "SIGINT")
    # A stop saves the whole training state, for an exact resume. Lightning's save flag `weights_only` means
    # "save only the weights" (not torch.load's safe loading); left unset, Lightning logs a line that reads
    # as if our checkpoints were loaded unsafely, so it is said.
    SAVE_ONLY_WEIGHTS = False

    def __init__(self, dirpath: str, filename: str = "last", agree_every_n_steps: int | None = None,
                 max_delay_s: float = 5.0) -> None:
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.agree_every, self.max_delay_s = agree_every_n_steps, float(max_delay_s)
        self._signal: str | None = None
        self._previous: dict[int, Any] = {}
        self._next_agreement = 0  # global step of the next DDP agreement
        self._last_agreement: tuple[int, float] | None = None  # (global step, monotonic time)
        self._taken = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.take_over(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.take_over(trainer)  # the sanity check runs before on_train_start

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.take_over(trainer)

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        stop_if_signalled(trainer, "the sanity check" if trainer.sanity_checking else "validation", batch_idx)

    def on_test_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        stop_if_signalled(trainer, "the test", batch_idx)

    def take_over(self, trainer: L.Trainer) -> None:
        """Our handlers in place of Lightning's, once per fit: at train start, or earlier when a phase
        without training steps (the feature cache, run by the freeze schedule's on_train_start)
        begins first (`take_over_signals`)."""
        if self._taken:
            return
        self._taken = True
        self._signal = None
        n = self.agree_every or max(1, trainer.log_every_n_steps)
        self._next_agreement, self._last_agreement = (trainer.global_step // n + 1) * n, None
        loop = trainer.fit_loop.epoch_loop
        # Lightning's per-batch SIGTERM broadcast (a private method) is replaced by our agreement; if a
        # Lightning release renames it, DDP runs would deadlock on signals: say so instead of going on.
        if not hasattr(loop, _LIGHTNING_SIGTERM_BROADCAST) and trainer.world_size > 1:
            raise RuntimeError(f"this Lightning ({L.__version__}) has no {type(loop).__name__}."
                               f"{_LIGHTNING_SIGTERM_BROADCAST}, which StopOnSignal replaces under DDP; "
                               "use a lightning release the project pins, or update StopOnSignal")
        setattr(loop, _LIGHTNING_SIGTERM_BROADCAST, _no_sigterm_broadcast)
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._on_signal)

    @property
    def signalled(self) -> bool:
        """Whether this process received SIGTERM/SIGINT since our handlers took over."""
        return self._signal is not None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:
            raise KeyboardInterrupt  # asked twice: stop now
        self._signal = signal.Signals(signum).name

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch,
                           batch_idx: int) -> None:
        if trainer.world_size == 1:
            stop = self._signal is not None
        elif trainer.global_step >= self._next_agreement:
            stop = self._agree(trainer)
        else:
            return
        if stop:
            self.stop(trainer, "training")

    def stop(self, trainer: L.Trainer, phase: str) -> None:
        """Save `last.ckpt` (every rank: the strategy writes once; nothing before the first step) and
        raise the `SIGTERMException` that `cifar_ft.runs.entry` reports in one line."""
        saved = trainer.state.fn == "fit" and trainer.global_step > 0
        if saved:
            if trainer.validating and not trainer.sanity_checking:
                _rewind_validation(trainer)
            trainer.save_checkpoint(self.path, weights_only=self.SAVE_ONLY_WEIGHTS)
        name = self._signal or "SIGTERM"  # a rank that was not signalled itself follows the others
        log.warning("%s during %s at epoch %d, step %d: %s", name, phase, trainer.current_epoch, trainer.global_step,
                    f"saved {self.path}" if saved else "nothing to save" if trainer.state.fn != "fit"
                    else "nothing to save yet (no training step done)")
        raise stop_exception(name, phase, trainer.state.fn == "fit", str(self.path) if saved else None,
                             trainer.global_step)

    def _agree(self, trainer: L.Trainer) -> bool:
        """The one collective: max over ranks of [signalled, seconds per step since the last agreement]."""
        step, now = trainer.global_step, time.monotonic()
        per_step = 0.0
        if self._last_agreement is not None and step > self._last_agreement[0]:
            per_step = (now - self._last_agreement[1]) / (step - self._last_agreement[0])
        flags = torch.tensor([float(self._signal is not None), per_step], device=trainer.strategy.root_device)
        signalled, per_step = trainer.strategy.reduce(flags, reduce_op="max").tolist()
        self._last_agreement = (step, now)
        if self.agree_every:
            self._next_agreement = step + self.agree_every
        else:  # whole logging intervals; the same on every rank: computed from the reduced values
            n = max(1, trainer.log_every_n_steps)
            intervals = int(self.max_delay_s / (per_step * n)) if per_step else 1
            self._next_agreement = step + n * max(1, min(1000, intervals))
        return signalled > 0

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "")  # a stop (or a crash) leaves the process's handlers as it found them

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        vars(trainer.fit_loop.epoch_loop).pop("_broadcast_sigterm_tensor", None)
        if threading.current_thread() is threading.main_thread():
            for number, handler in self._previous.items():
                signal.signal(number, handler)
        self._previous = {}
        self._taken = False


_LIGHTNING_SIGTERM_BROADCAST = "_broadcast_sigterm_tensor"


def _stopper(trainer: L.Trainer) -> StopOnSignal | None:
    return next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)


def take_over_signals(trainer: L.Trainer) -> None:
    """Before a long phase without training steps: SIGTERM/SIGINT are handled by StopOnSignal from now."""
    stopper = _stopper(trainer)
    if stopper is not None:
        stopper.take_over(trainer)


def stop_if_signalled(trainer: L.Trainer, phase: str, batch_idx: int, agree_every: int = 8) -> None:
    """For phases without training steps (feature cache, validation, test): stop if a signal arrived.
    Single process: checked at every batch. Under DDP every rank calls this at the same batches (each
    computes the whole split), and every `agree_every`-th batch the ranks agree (one 1-element
    all-reduce), so a signal to one rank stops them all, at the same batch."""
    stopper = _stopper(trainer)
    if stopper is None:  # the same on every rank: one config
        return
    signalled = stopper.signalled
    if trainer.world_size > 1:
        if batch_idx % agree_every:
            return
        flag = torch.tensor([float(signalled)], device=trainer.strategy.root_device)
        signalled = trainer.strategy.reduce(flag, reduce_op="max").item() > 0
    if signalled:
        stopper.stop(trainer, phase)


def stop_exception(name: str, phase: str, fitting: bool, checkpoint: str | None, step: int | None
                   ) -> SIGTERMException:
    """The exception a stop raises: `cifar_ft.runs.entry` reports it in one line (exit 128 + signal)."""
    exc = SIGTERMException(128 + getattr(signal, name))
    exc.signal, exc.phase, exc.fitting, exc.checkpoint, exc.step = name, phase, fitting, checkpoint, step
    return exc


@contextlib.contextmanager
def stop_on_signals(phase: str) -> Iterator[None]:
    """For passes outside Lightning's loops (after the test: the corruption evaluation): SIGTERM/SIGINT
    raise `stop_exception` at once; nothing of the pass is written. Handlers restored on exit."""
    def handler(signum: int, frame: Any) -> None:
        raise stop_exception(signal.Signals(signum).name, phase, False, None, None)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _rewind_validation(trainer: L.Trainer) -> None:
    """Record fit's current validation as started, no batch processed: the state in which Lightning
    (>= 2.2, `_EvaluationLoop.restarted_mid_evaluation`) runs it again on resume, from its first batch.
    Only the loop's public progress counters change (`batch_progress`: total and current)."""
    progress = trainer.fit_loop.epoch_loop.val_loop.batch_progress
    before = progress.total.completed - progress.current.completed  # batches of earlier validations
    for counters, base in ((progress.total, before), (progress.current, 0)):
        counters.ready = counters.started = base + 1
        counters.processed = counters.completed = base


def _no_sigterm_broadcast() -> None:
    """Stands in for Lightning's per-batch SIGTERM broadcast while StopOnSignal handles signals."""
