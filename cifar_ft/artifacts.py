"""What a run leaves behind: metrics.json, the confusion-matrix figure, provenance."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import torch

from cifar_ft.errors import ConfigError


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


def confusion_figure(matrix: torch.Tensor, class_names: list[str]):
    """Row-normalised confusion matrix (true × predicted) with counts, as a matplotlib figure."""
    # No pyplot: no backend switch (notebooks keep theirs), no global figure state to leak.
    from matplotlib.figure import Figure

    counts = matrix.float()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
    n = len(class_names)
    size = max(5.0, 0.45 * n + 2)
    fig = Figure(figsize=(size, size * 0.9))
    ax = fig.add_subplot()
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8 if n <= 20 else 5)
    ax.set_yticks(range(n), class_names, fontsize=8 if n <= 20 else 5)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    acc = counts.diag().sum() / counts.sum().clamp_min(1)
    ax.set_title(f"Confusion matrix (accuracy {acc:.2%})")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    fig.tight_layout()
    return fig
