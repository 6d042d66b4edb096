"""Figures every run leaves beside metrics.json (curves.png, confusion_matrix.png), and reading its
TensorBoard scalars back. No pyplot: no backend switch (notebooks keep theirs), no global state."""
from __future__ import annotations

from pathlib import Path

import torch


def confusion_figure(matrix: torch.Tensor, class_names: list[str]):
    """Row-normalised confusion matrix (true × predicted) with counts, as a matplotlib figure."""
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
    """Loss per iteration; train vs val accuracy and loss per epoch; whatever of these the run logged
    (None when it logged none of them)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    s = read_scalars(tb_dir)
    series = ("train/loss", "train/acc", "val/acc", "train/loss_epoch", "val/loss")
    if not any(v == v for tag in series for _, v in s.get(tag, [])):
        return None
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3)
    if s.get("train/loss"):
        steps, values = zip(*s["train/loss"])
        axes[0].plot(steps, values, lw=0.8)
    else:  # a run shorter than trainer.log_every_n_steps logs no per-step loss: say so, plot the rest
        axes[0].text(0.5, 0.5, "no per-step loss logged\n(run shorter than trainer.log_every_n_steps)",
                     ha="center", va="center", transform=axes[0].transAxes)
    axes[0].set(title="train loss per iteration", xlabel="optimizer step", ylabel="loss")
    for i, (step, _) in enumerate(s.get("train/resumed_at_step", [])):  # that epoch's train metrics: after it
        axes[0].axvline(step, color="tab:red", ls="--", lw=0.8, label="resumed (epoch metrics: steps after)" if i == 0
                        else None)
    if s.get("train/resumed_at_step"):
        axes[0].legend(fontsize=7)
    for ax, (name, train_tag, val_tag) in zip(axes[1:], [("accuracy", "train/acc", "val/acc"),
                                                          ("loss", "train/loss_epoch", "val/loss")]):
        for tag, label in ((train_tag, "train"), (val_tag, "val")):
            points = list(enumerate(v for _, v in s.get(tag, []) if v == v))  # runs before hp/ logged NaN here
            if points:
                ax.plot(*zip(*points), marker="o", label=label)
        ax.set(title=f"{name} per epoch", xlabel="epoch", ylabel=name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
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


def sweep_figure(groups: list[dict], curves: dict[str, list[list[float]]], metric: str):
    """Per group: val/acc per epoch (mean over seeds; band min..max only with two seeds or more), and test/acc
    (error bars: std, only with two seeds or more). The legend sits below the curves, labels wrapped, and
    the layout is constrained: any number of groups and any name length fit, nothing is clipped."""
    import textwrap

    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(14, 4.5 + 0.22 * len(groups)), layout="constrained")
    left, right = fig.subplots(1, 2)
    for g in groups:
        runs = [c for c in curves.get(g["group"], []) if c]
        if not runs:
            continue
        length = min(len(c) for c in runs)
        stacked = torch.tensor([c[:length] for c in runs])
        epochs = list(range(length))
        left.plot(epochs, stacked.mean(0).tolist(), marker="o", label=textwrap.fill(f"{g['group']} (n={g['n']})", 70))
        if len(runs) >= 2:
            left.fill_between(epochs, stacked.min(0).values.tolist(), stacked.max(0).values.tolist(), alpha=0.2)
    left.set(title="val/acc per epoch\n(mean; band min..max with 2+ seeds)", xlabel="epoch", ylabel="val/acc")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.grid(alpha=0.3)
    handles, labels = left.get_legend_handles_labels()
    if handles:  # below both panels, in space the constrained layout reserves for it
        fig.legend(handles, labels, loc="outside lower left", fontsize=7, ncol=2 if len(labels) > 6 else 1,
                   frameon=False)
    shown = [g for g in groups if "test/acc" in g]
    means = [g["test/acc"] for g in shown]
    stds = [g["test/acc std"] if g.get("n", 1) >= 2 else 0.0 for g in shown]  # one seed: no interval to draw
    right.bar(range(len(shown)), means, yerr=stds if any(stds) else None, capsize=4, color="tab:blue", alpha=0.8)
    right.set_xticks(range(len(shown)), [n if len(n) < 30 else n[:27] + "..." for n in (g["group"] for g in shown)],
                     rotation=20, ha="right", fontsize=7)
    # bars start at 0: a cut axis makes small differences look large
    right.set(title=f"test/acc per group\n(mean, ± std with 2+ seeds; ranked by {metric})", ylabel="test/acc",
              ylim=(0.0, min(1.0, max((m + s for m, s in zip(means, stds)), default=1.0) + 0.05)))
    right.grid(alpha=0.3, axis="y")
    return fig


def reliability_bins(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15) -> dict[str, torch.Tensor]:
    """Per equal-width confidence bin ((i/bins, (i+1)/bins], as torchmetrics bins them): image
    count, mean confidence, accuracy; and ECE, the count-weighted mean |accuracy - confidence|."""
    index = (confidence.double() * bins).ceil().long().clamp(1, bins) - 1
    count = torch.bincount(index, minlength=bins).double()
    conf = torch.bincount(index, weights=confidence.double(), minlength=bins) / count.clamp_min(1)
    acc = torch.bincount(index, weights=correct.double(), minlength=bins) / count.clamp_min(1)
    ece = ((acc - conf).abs() * count).sum() / count.sum().clamp_min(1)
    return {"count": count, "confidence": conf, "accuracy": acc, "ece": ece}


def reliability_figure(confidence: torch.Tensor, correct: torch.Tensor, bins: int = 15):
    """Reliability diagram: accuracy per confidence bin against the diagonal (a calibrated model),
    with the number of images per bin below; ECE in the title."""
    from matplotlib.figure import Figure

    r = reliability_bins(confidence, correct, bins)
    edges = torch.linspace(0, 1, bins + 1)
    fig = Figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    filled = r["count"] > 0
    top.bar(edges[:-1][filled], r["accuracy"][filled], width=1 / bins, align="edge", edgecolor="black",
            label="accuracy")
    top.plot([0, 1], [0, 1], "--", color="gray", label="calibrated")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
            title=f"reliability (test, {int(r['count'].sum())} images): ECE {float(r['ece']):.4f}")
    top.legend(loc="upper left")
    bottom.bar(edges[:-1], r["count"], width=1 / bins, align="edge", edgecolor="black", color="tab:gray")
    bottom.set(xlabel="confidence (top-1 probability)", ylabel="images")
    return fig
