"""Figures and tables every run leaves beside metrics.json: curves.png, confusion_matrix.png, per_class.csv."""
from __future__ import annotations

import csv
from pathlib import Path

import torch


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


def read_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series in a TensorBoard directory: tag -> [(step, value)], sorted by step.

    A resumed run appends a new event file; where it re-ran steps of the interrupted one, the later
    file's value wins, so each step (and each epoch) appears once."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    series: dict[str, dict[int, float]] = {}
    files = sorted(tb_dir.glob("events.out.tfevents.*"), key=lambda f: (f.stat().st_mtime_ns, f.name))
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags().get("scalars", []):
            points = series.setdefault(tag, {})
            for e in acc.Scalars(tag):
                if e.value == e.value or e.step not in points:  # NaN: the HPARAMS placeholder
                    points[e.step] = e.value
    return {tag: sorted(points.items()) for tag, points in series.items()}


def curves_figure(tb_dir: Path):
    """Loss per iteration; train vs val accuracy and loss per epoch (None without train/loss)."""
    # No pyplot: no backend switch (notebooks keep theirs), no global figure state to leak.
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    s = read_scalars(tb_dir)
    if "train/loss" not in s:
        return None
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    steps, values = zip(*s["train/loss"])
    axes[0].plot(steps, values, lw=0.8)
    axes[0].set(title="train loss per iteration", xlabel="optimizer step", ylabel="loss")
    for ax, (name, train_tag, val_tag) in zip(axes[1:], [("accuracy", "train/acc", "val/acc"),
                                                          ("loss", "train/loss_epoch", "val/loss")]):
        for tag, label in ((train_tag, "train"), (val_tag, "val")):
            points = list(enumerate(v for _, v in s.get(tag, []) if v == v))  # drop the NaN hparams placeholder
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set(title=f"{name} per epoch", xlabel="epoch", ylabel=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        ax.grid(alpha=0.3)
    axes[0].grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_curves(tb_dir: Path, path: Path) -> Path | None:
    """curves.png of `curves_figure`."""
    fig = curves_figure(tb_dir)
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    return path
