"""What a run shows on the console: on a terminal, a progress bar that costs nothing between logging steps;
where the output goes to a file (a cluster job's log), plain progress lines every `every_s` seconds, since
a bar draws nothing there; and a model summary without a FLOPs count Lightning cannot make for our module."""
from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichModelSummary, RichProgressBar

log = logging.getLogger("cifar_ft")
T = TypeVar("T")


def interactive() -> bool:
    """Whether the console is a terminal (a bar redraws there; a file gets lines)."""
    return sys.stdout.isatty()


def progress_bar(refresh_rate: int = 1, every_s: float = 30.0) -> ProgressBar:
    """`callbacks.progress_bar`: the rich bar on a terminal, `PlainProgress` lines elsewhere."""
    return LoggedLossProgressBar(refresh_rate=refresh_rate) if interactive() else PlainProgress(every_s)


def _clock(seconds: float) -> str:
    seconds = int(max(0.0, seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plain_progress(items: Iterable[T], desc: str, total: int, every_s: float = 30.0) -> Iterator[T]:
    """`items`, with a line `desc: i/total (pct), elapsed, left` every `every_s` seconds and at the end,
    for passes outside the training loop (feature cache, calibration, corruptions) when not on a terminal."""
    start = last = time.monotonic()
    for i, item in enumerate(items, 1):
        yield item
        now = time.monotonic()
        if now - last >= every_s or i == total:
            last, rate = now, (now - start) / i
            log.info("%s: %d/%d (%.0f%%), elapsed %s, left %s", desc, i, total, 100 * i / max(1, total),
                     _clock(now - start), _clock(rate * (total - i)))


class PlainProgress(ProgressBar):
    """A line every `every_s` seconds of training, on the next logging step (and one at the end of each
    validation and test): step of total, epoch, images/s, the loss the logger read at that step, elapsed and
    left. Lines come only on logging steps, where the logger has read the loss already: no host sync."""

    def __init__(self, every_s: float = 30.0) -> None:
        super().__init__()
        self.every_s, self._enabled = float(every_s), True
        self._start = self._last = 0.0
        self._images, self._first_step = 0, 0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = self._last = time.monotonic()
        self._images, self._first_step = 0, trainer.global_step  # a resumed run counts from where it was

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
                           ) -> None:
        self._images += len(batch[0]) if isinstance(batch, (list, tuple)) else 0
        now = time.monotonic()
        logging_step = trainer.global_step % max(1, trainer.log_every_n_steps) == 0  # the loss is on the host then
        if not self._enabled or not trainer.is_global_zero or now - self._last < self.every_s or not logging_step:
            return
        self._last, done = now, trainer.global_step - self._first_step
        total = trainer.estimated_stepping_batches
        left = (now - self._start) / max(1, done) * max(0, total - trainer.global_step)
        loss = trainer.logged_metrics.get("train/loss")
        log.info("step %d/%d, epoch %d, %.1f images/s, loss %s, elapsed %s, left %s", trainer.global_step, total,
                 trainer.current_epoch, self._images / max(1e-9, now - self._start),
                 f"{float(loss):.4f}" if loss is not None else "-", _clock(now - self._start), _clock(left))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._summary(trainer, "val/", "validation")

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._summary(trainer, "test/", "test")

    def _summary(self, trainer: L.Trainer, prefix: str, what: str) -> None:
        if not self._enabled or not trainer.is_global_zero or trainer.sanity_checking:
            return
        shown = {k: round(float(v), 4) for k, v in trainer.callback_metrics.items() if k.startswith(prefix)
                 and k.count("/") == 1 and k.split("/")[1] in ("acc", "loss")}
        log.info("%s done at step %d: %s", what, trainer.global_step, shown)


class LoggedLossProgressBar(RichProgressBar):
    """Lightning's rich progress bar, redrawn every `refresh_rate` batches (conf: the logging steps),
    showing the training loss as the logger last wrote it.

    Logging the loss with `prog_bar=True` instead makes the bar read the device tensor back after
    every batch (Rich gathers its metrics per batch whatever the refresh rate): a host sync every
    step. Here the value is read once per logging step, right after the logger has read it."""

    def __init__(self, refresh_rate: int = 1, leave: bool = False, **kwargs) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave, **kwargs)
        self._loss: float | None = None
        self._read_at = -1

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        step = trainer.global_step
        if step != self._read_at and step % max(1, trainer.log_every_n_steps) == 0:
            loss = trainer.logged_metrics.get("train/loss")
            if loss is not None:
                self._loss, self._read_at = round(float(loss), 4), step
        if self._loss is not None:
            items["loss"] = self._loss
        return items


class ModelSummaryWithoutFlops(RichModelSummary):
    """Lightning's rich model summary without its FLOPs column and "Total FLOPs" line. Lightning
    (2.6) counts FLOPs only through a forward pass of `example_input_array`, which our module does
    not define (that pass would compile a compiled model at batch size 1), so it printed "Total FLOPs:
    0", which reads as a bug. FLOPs per image are counted by `ThroughputMonitor` (MFU, on GPUs)."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int = 0,
                  **summarize_kwargs: Any) -> None:
        from lightning.pytorch.utilities.model_summary.model_summary import (
            get_formatted_model_size,
            get_human_readable_count,
        )
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name != "FLOPs"]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name or " ", justify="right" if name in ("Params", "In sizes", "Out sizes") else "left")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        for label, value in (("Trainable params", get_human_readable_count(int(trainable_parameters))),
                             ("Non-trainable params", get_human_readable_count(int(frozen))),
                             ("Total params", get_human_readable_count(int(total_parameters))),
                             ("Total estimated model params size (MB)", get_formatted_model_size(model_size)),
                             ("Modules in train / eval mode",
                              f"{total_training_modes['train']} / {total_training_modes['eval']}")):
            console.print(f"[bold]{label}[/]: {value}")
