"""What a run shows on the console: a progress bar that costs nothing between logging steps, and a
model summary without a FLOPs count Lightning cannot make for our module."""
from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichModelSummary, RichProgressBar


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
