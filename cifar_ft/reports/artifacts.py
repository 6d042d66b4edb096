"""What a run leaves behind besides checkpoints: metrics.json, per-class and per-image tables, provenance."""
from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import time
from pathlib import Path

import lightning as L
import torch

from cifar_ft.contracts import RunFacts
from cifar_ft.errors import ConfigError
from cifar_ft.reports.figures import confusion_figure, plot_curves, reliability_figure


def ensure_writable(directory: Path) -> None:
    """Fail before any training if the run directory cannot take checkpoints and logs."""
    probe = directory / f".write-test-{os.getpid()}"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"paths.output_dir={str(directory)!r} is not writable ({exc.strerror}); choose "
                          "another with hydra.run.dir=DIR (or paths.output_dir=DIR)") from exc


def git_commit() -> str | None:
    """The commit of the cifar_ft source tree (with `-dirty` when modified), if it is a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def to_float_dict(metrics: dict) -> dict[str, float]:
    out = {}
    for key, value in metrics.items():
        value = value.item() if isinstance(value, torch.Tensor) else value
        if isinstance(value, (int, float)) and math.isfinite(value):
            out[key] = float(value)
    return out


def write_metrics(path: Path, metrics: dict) -> Path:
    """A flat JSON object keyed by metric name, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def per_class_rows(confusion: torch.Tensor, class_names: list[str]) -> list[dict]:
    """Precision, recall, F1 and support per class, from a (true × predicted) confusion matrix."""
    cm = confusion.double()
    tp, support, predicted = cm.diag(), cm.sum(1), cm.sum(0)
    precision = tp / predicted.clamp_min(1)
    recall = tp / support.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    return [{"class": n, "precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
             "support": int(s)} for n, p, r, f, s in zip(class_names, precision, recall, f1, support)]


def write_per_class(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_test_predictions(path: Path, rows: torch.Tensor, class_names: list[str]) -> None:
    """test_predictions.csv: one row per test image (its index in the test split), for error analysis."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["index", "label", "prediction", "confidence", "label_probability", "correct"])
        for index, label, pred, conf, p_label in rows.tolist():
            writer.writerow([int(index), class_names[int(label)], class_names[int(pred)], round(conf, 6),
                             round(p_label, 6), int(label == pred)])


def run_facts(trainer: L.Trainer, seed: int, start: float, best: str | None, best_score, metric: str) -> dict:
    """Provenance and cost figures that go into metrics.json next to the test metrics; callbacks
    that implement the `RunFacts` contract add theirs (images/s, MFU)."""
    facts: dict = {"seed": seed, "wall_time_s": time.time() - start, "epochs": trainer.current_epoch,
                   "global_step": trainer.global_step, "git_commit": git_commit(), "best_ckpt": best or None}
    if best_score is not None:
        facts[f"{metric}_best"] = float(best_score)
    if best and Path(best).is_file():
        facts["checkpoint_mb"] = Path(best).stat().st_size / 2**20
    for cb in trainer.callbacks:
        if isinstance(cb, RunFacts):
            facts.update(cb.run_facts())
    return facts


def write_test_artifacts(loggers: list, confusion: torch.Tensor | None, predictions: torch.Tensor | None,
                         class_names: list[str], output_dir: Path) -> None:
    """confusion_matrix.png, reliability.png, per_class.csv, test_predictions.csv and curves.png in the
    run directory, and the figures and per-class table in TensorBoard."""
    if confusion is None:
        return
    rows = per_class_rows(confusion, class_names)
    write_per_class(output_dir / "per_class.csv", rows)
    figures = {"confusion_matrix": confusion_figure(confusion, class_names)}
    if predictions is not None:  # rows: index, label, prediction, confidence, p(label)
        write_test_predictions(output_dir / "test_predictions.csv", predictions, class_names)
        figures["reliability"] = reliability_figure(predictions[:, 3], predictions[:, 1] == predictions[:, 2])
    for name, figure in figures.items():
        figure.savefig(output_dir / f"{name}.png", dpi=110)
    table = "| class | precision | recall | f1 | support |\n|---|---|---|---|---|\n" + "\n".join(
        f"| {r['class']} | {r['precision']} | {r['recall']} | {r['f1']} | {r['support']} |" for r in rows)
    for logger in loggers:
        experiment = getattr(logger, "experiment", None)
        if hasattr(experiment, "add_figure"):
            for name, figure in figures.items():
                experiment.add_figure(f"test/{name}", figure)
            experiment.add_text("test/per_class", table)
            experiment.flush()
    plot_curves(output_dir / "tensorboard", output_dir / "curves.png")
