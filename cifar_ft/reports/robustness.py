"""`robustness=corruptions`: accuracy (and calibration) of a model on its test split under the CIFAR-10-C
corruptions (data/corruptions.py), for `cifar_ft.eval` and at the end of a training run.

The test images (uint8, as stored) are corrupted batch by batch on the model's device, then prepared
exactly as in the test (the data's eval transform: resize to the model's input size, normalise).
Batch k of corruption c at severity s is drawn from its own generator, seeded by (seed, c, s, k): the
result depends on the seed and `batch_size`, never on what ran before, so two runs agree exactly.
The clean accuracy is measured in the same pass, the same way, so the drop compares like with like.

Writes (whole or not at all: temporary file + rename) `robustness.csv` (corruption, severity, acc,
ece, nll), `robustness.png` (heat map), and returns the metrics.json entries:
`robustness/clean_acc`, `robustness/mean_acc` (over every corruption and severity run),
`robustness/drop` (clean - mean), `robustness/mean_ece`, and `robustness/<corruption>` (mean over
its severities).
"""
from __future__ import annotations

import csv
import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torchmetrics.functional.classification import multiclass_calibration_error
from tqdm.auto import tqdm

from cifar_ft.callbacks.progress import interactive, plain_progress
from cifar_ft.callbacks.stop_on_signal import stop_on_signals
from cifar_ft.data.corruptions import CORRUPTIONS, SEVERITIES, TorchDraws
from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.models.calibration import TTA

log = logging.getLogger("cifar_ft")


@dataclass
class RobustnessConfig:
    """The `robustness` config group (conf/robustness/corruptions.yaml)."""

    corruptions: list[str] = field(default_factory=lambda: list(CORRUPTIONS))
    severities: list[int] = field(default_factory=lambda: list(SEVERITIES))
    seed: int = 0
    batch_size: int = 50
    tta: str | None = "none"  # none: one view, the CIFAR-10-C protocol; null: the checkpoint's own

    def check(self) -> RobustnessConfig:
        """One line naming the bad value, before anything runs."""
        if not self.corruptions or not self.severities:
            raise ConfigError("robustness.corruptions and robustness.severities must name at least one each")
        for name in self.corruptions:
            check_choice("robustness.corruptions", name, CORRUPTIONS)
        for s in self.severities:
            if s not in SEVERITIES:
                raise ConfigError(f"robustness.severities: {s!r} is not valid; valid: 1, 2, 3, 4, 5")
        if self.tta is not None:
            check_choice("robustness.tta", self.tta, TTA)
        if int(self.batch_size) < 1:
            raise ConfigError(f"robustness.batch_size={self.batch_size} must be >= 1")
        return self


def batch_seed(seed: int, corruption: str, severity: int, batch: int) -> int:
    return zlib.crc32(f"{seed}/{corruption}/{severity}/{batch}".encode())


@torch.inference_mode()
def _score(model, transform, images: torch.Tensor, tta: str | None) -> torch.Tensor:
    return model.predict_probs(transform(images), tta).float()


def evaluate_corruptions(model, images: torch.Tensor, labels: torch.Tensor, transform, cfg: RobustnessConfig,
                         device: torch.device, show_progress: bool = True) -> tuple[list[dict], float]:
    """Rows {corruption, severity, acc, ece, nll} and the clean accuracy, for uint8 `images` (N, 3, H, W)."""
    model.eval().to(device)
    n, bs = len(images), int(cfg.batch_size)
    num_classes = int(model.hparams.num_classes)

    def run(corrupt) -> dict[str, float]:
        probs = []
        for k, start in enumerate(range(0, n, bs)):
            batch = images[start:start + bs].to(device)
            probs.append(_score(model, transform, corrupt(batch, k), cfg.tta).cpu())
        p = torch.cat(probs)
        return {"acc": float((p.argmax(1) == labels).float().mean()),
                "ece": float(multiclass_calibration_error(p, labels, num_classes, n_bins=15, norm="l1")),
                "nll": float(torch.nn.functional.nll_loss(p.clamp_min(1e-12).log(), labels))}

    clean = run(lambda batch, k: batch)["acc"]
    todo = [(c, s) for c in cfg.corruptions for s in cfg.severities]
    rows = []
    shown = plain_progress(todo, "corruptions", len(todo)) if show_progress and not interactive() else \
        tqdm(todo, desc="corruptions", unit="condition", disable=None if show_progress else True)
    for name, severity in shown:
        def corrupt(batch: torch.Tensor, k: int, name=name, severity=severity) -> torch.Tensor:
            gen = torch.Generator(device=device).manual_seed(batch_seed(cfg.seed, name, severity, k))
            return CORRUPTIONS[name](batch, severity, TorchDraws(gen))
        rows.append({"corruption": name, "severity": severity, **run(corrupt)})
    return rows, clean


def summary(rows: list[dict], clean: float) -> dict[str, float]:
    """The metrics.json entries of a corruption evaluation."""
    mean = sum(r["acc"] for r in rows) / len(rows)
    out = {"robustness/clean_acc": clean, "robustness/mean_acc": mean, "robustness/drop": clean - mean,
           "robustness/mean_ece": sum(r["ece"] for r in rows) / len(rows)}
    for name in dict.fromkeys(r["corruption"] for r in rows):
        accs = [r["acc"] for r in rows if r["corruption"] == name]
        out[f"robustness/{name}"] = sum(accs) / len(accs)
    return out


def write_robustness(rows: list[dict], clean: float, out_dir: Path) -> None:
    """robustness.csv and robustness.png in `out_dir`, each written whole."""
    from cifar_ft.reports.diagnostics import robustness_figure

    tmp = out_dir / "robustness.csv.tmp"
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["corruption", "severity", "acc", "ece", "nll"])
        writer.writeheader()
        writer.writerows({**r, **{k: round(r[k], 6) for k in ("acc", "ece", "nll")}} for r in rows)
    tmp.replace(out_dir / "robustness.csv")
    fig = robustness_figure(rows, clean)
    fig.savefig(out_dir / "robustness.tmp.png", dpi=110)
    (out_dir / "robustness.tmp.png").replace(out_dir / "robustness.png")


def robustness_config(node) -> RobustnessConfig | None:
    """The checked `robustness` config of a command (None: not asked for)."""
    if node is None:
        return None
    from hydra.utils import instantiate

    return instantiate(node).check()


def after_test(rcfg: RobustnessConfig | None, trainer, model, datamodule, out_dir: Path) -> dict[str, float]:
    """On the first process, once the test ran: the corruption evaluation (nothing when not asked for)."""
    if rcfg is None or not trainer.is_global_zero:
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    with stop_on_signals("the corruption evaluation"):
        return run_robustness(model, datamodule, rcfg, out_dir, trainer.strategy.root_device,
                              trainer.progress_bar_callback is not None)


def run_robustness(model, datamodule, cfg: RobustnessConfig, out_dir: Path, device: torch.device,
                   show_progress: bool = True) -> dict[str, float]:
    """The whole test split of `datamodule` (set up) under `cfg`'s corruptions: files and metrics."""
    images, labels = [], []
    for x, y, _ in datamodule.ordered_loader("test"):
        images.append(x)
        labels.append(y)
    images, labels = torch.cat(images), torch.cat(labels)
    log.info("Corruption robustness: %d test images x %d corruptions x %d severities", len(images),
             len(cfg.corruptions), len(cfg.severities))
    rows, clean = evaluate_corruptions(model, images, labels, datamodule.eval_transform(), cfg, device,
                                       show_progress)
    write_robustness(rows, clean, out_dir)
    metrics = summary(rows, clean)
    log.info("Corruption robustness: clean %.4f, mean over corruptions %.4f (drop %.4f)", clean,
             metrics["robustness/mean_acc"], metrics["robustness/drop"])
    return metrics
