"""`calibrate=temperature`: temperature scaling fitted on the validation split before the final test.

When: `on_test_start` of a training run's final test, after Lightning loaded the tested (best)
checkpoint's weights. Every rank runs the whole validation split (DDP ranks get identical
log-probabilities, hence the same T, without a collective), under the module's own TTA, and fits T
by L-BFGS on the NLL (`fit_temperature`; how T is applied: models/calibration.py). The module then
applies T in the test; rank 0 writes it into that checkpoint (its `temperature` buffer, plus a
`calibration` record: T, validation NLL and ECE before and after), atomically (temporary file +
rename), so `cifar_ft.eval`, `cifar_ft.predict` and every export apply it. Works through the
`FrozenPhaseData` / `CalibratableModule` contracts.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torchmetrics.functional.classification import multiclass_calibration_error

from cifar_ft.callbacks.progress import interactive, plain_progress
from cifar_ft.callbacks.stop_on_signal import stop_if_signalled, take_over_signals
from cifar_ft.contracts import CalibratableModule, FrozenPhaseData
from cifar_ft.errors import ConfigError

log = logging.getLogger(__name__)
ECE_BINS = 15  # as test/ece


def nll(log_probs: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (nats) of the labels under softmax(log p / T)."""
    return float(nn.functional.cross_entropy(log_probs.double() / temperature, labels))


def fit_temperature(log_probs: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """The T > 0 that minimises the NLL of `labels` under softmax(log_probs / T) (float64, on the CPU).

    Optimised over log T (T stays positive; the NLL is smooth and, in 1/T, convex), from T = 1, by
    L-BFGS with a strong-Wolfe line search; deterministic for given inputs.
    """
    with torch.inference_mode(False), torch.enable_grad():
        # the final test runs under inference mode: this fit needs autograd, on normal (cloned) tensors
        z, y = log_probs.detach().double().cpu().clone(), labels.detach().long().cpu().clone()
        if len(z) == 0:
            raise ValueError("fit_temperature: no samples")
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(z / log_t.exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
    return float(log_t.detach().exp())


@torch.no_grad()
def split_log_probs(trainer: L.Trainer, dm: FrozenPhaseData, module: CalibratableModule,
                    split: str = "val") -> tuple[torch.Tensor, torch.Tensor]:
    """(log-probabilities (N, C) float64, labels (N,)) of every image of `split`, in index order, CPU."""
    transform, out, labels = dm.eval_transform(), [], []
    with trainer.precision_plugin.forward_context():
        loader = dm.ordered_loader(split)
        if trainer.is_global_zero and not interactive():  # a log file: where the calibration pass is
            loader = plain_progress(loader, f"temperature scaling ({split} split)", len(loader))
        for batch_idx, (images, y, _) in enumerate(loader):
            stop_if_signalled(trainer, "temperature scaling (validation split)", batch_idx)
            out.append(module.tta_log_probs(transform(images.to(module.device, non_blocking=True))).double().cpu())
            labels.append(y)
    return torch.cat(out), torch.cat(labels)


def calibration_record(log_probs: torch.Tensor, labels: torch.Tensor, temperature: float) -> dict[str, float]:
    """Validation NLL (nats) and ECE (15 bins) before and after dividing by `temperature`."""
    record = {"temperature": temperature, "val_images": float(len(labels))}
    for when, t in (("before", 1.0), ("after", temperature)):
        record[f"val/nll_{when}_temperature"] = nll(log_probs, labels, t)
        probs = (log_probs / t).softmax(-1).float()
        record[f"val/ece_{when}_temperature"] = float(multiclass_calibration_error(
            probs, labels, log_probs.shape[1], n_bins=ECE_BINS, norm="l1"))
    return record


def store_temperature(path: str, record: dict[str, float]) -> None:
    """Put T into the checkpoint at `path` (state_dict buffer + `calibration`), atomically."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "current_model_state"):  # the tested weights, and EMA's live ones
        if key in ckpt:
            ckpt[key]["temperature"] = torch.tensor(record["temperature"], dtype=torch.float64)
    ckpt["calibration"] = {"method": "temperature", **record}
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    torch.save(ckpt, tmp)
    tmp.replace(path)


class TemperatureScaling(L.Callback):
    """Fits and applies one temperature before the final test; its figures go into metrics.json
    (`RunFacts`): temperature, val/nll_{before,after}_temperature, val/ece_{before,after}_temperature."""

    def __init__(self) -> None:
        self.record: dict[str, float] = {}

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        dm = trainer.datamodule
        if not isinstance(dm, FrozenPhaseData) or not isinstance(pl_module, CalibratableModule):
            raise TypeError("calibrate=temperature needs a FrozenPhaseData datamodule and a CalibratableModule")
        if dm.split_size("val") == 0:
            raise ConfigError("calibrate=temperature fits on the validation split, and this data has none; "
                              "give data.val_size > 0, or calibrate=none")
        take_over_signals(trainer)  # a SIGTERM during the validation pass stops within a batch
        was_training = pl_module.training
        pl_module.eval()
        log_probs, labels = split_log_probs(trainer, dm, pl_module)
        pl_module.train(was_training)
        temperature = fit_temperature(log_probs, labels)
        self.record = calibration_record(log_probs, labels, temperature)
        pl_module.set_temperature(temperature)
        if trainer.is_global_zero and trainer.ckpt_path:
            store_temperature(trainer.ckpt_path, self.record)
        trainer.strategy.barrier("temperature stored")
        log.info("Temperature scaling: T = %.4f on %d validation images; val NLL %.4f -> %.4f, ECE %.4f -> %.4f",
                 temperature, len(labels), self.record["val/nll_before_temperature"],
                 self.record["val/nll_after_temperature"], self.record["val/ece_before_temperature"],
                 self.record["val/ece_after_temperature"])

    def run_facts(self) -> dict[str, float]:
        return dict(self.record)
