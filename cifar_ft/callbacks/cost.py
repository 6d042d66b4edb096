"""What a run costs in parameters and memory, for metrics.json, TensorBoard and sweep summaries."""
from __future__ import annotations

import resource
import sys

import lightning as L
import torch


class ModelCost(L.Callback):
    """Trainable parameters (the most that trained in any epoch: a freeze schedule grows the set) as a
    count and % of the whole model, and peak memory: on a GPU the most bytes allocated by tensors
    during fit (`torch.cuda.max_memory_allocated`, reset at fit start); on a CPU the process's peak
    resident set (`ru_maxrss`: data, model and framework together, since the process started).
    In MiB, as `peak_memory_mb` (with `peak_memory_gpu` 1 or 0 saying which). Logged as `model/*` once
    fit ends; `run_facts()` (the `RunFacts` contract) puts them in metrics.json."""

    def __init__(self) -> None:
        self.trainable = self.total = 0
        self.peak_mb: float | None = None
        self.on_gpu = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self.total = sum(p.numel() for p in pl_module.parameters())

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # after the freeze schedule's hook for this epoch (it is registered earlier)
        now = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        self.trainable = max(self.trainable, now)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.on_gpu = pl_module.device.type == "cuda"
        if self.on_gpu:
            self.peak_mb = torch.cuda.max_memory_allocated(pl_module.device) / 2**20
        else:
            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
            self.peak_mb = kb / 2**20 if sys.platform == "darwin" else kb / 2**10
        for logger in trainer.loggers:
            logger.log_metrics({f"model/{k}": v for k, v in self.run_facts().items()}, step=trainer.global_step)

    def run_facts(self) -> dict[str, float]:
        facts = {"trainable_params": float(self.trainable), "total_params": float(self.total),
                 "trainable_pct": 100.0 * self.trainable / max(1, self.total)}
        if self.peak_mb is not None:  # MiB; peak_memory_gpu: 1 = GPU tensors, 0 = CPU process RSS
            facts.update(peak_memory_mb=self.peak_mb, peak_memory_gpu=float(self.on_gpu))
        return facts
