"""Figures of what a model gets wrong and where it breaks: robustness.png (accuracy per corruption and
severity) and mistakes.png (the most confidently wrong test images, with class-activation maps)."""
from __future__ import annotations

import torch


def image_grid(panels: list, titles: list[str], heading: str, columns: int = 4, panel: float = 3.0):
    """Images (H, W, 3 arrays) in a grid, each with its caption, under one heading."""
    from matplotlib.figure import Figure

    cols = min(columns, max(1, len(panels)))
    rows = max(1, -(-len(panels) // cols))
    fig = Figure(figsize=(panel * cols, 1.1 * panel * rows + 0.4), layout="constrained")
    for i, (img, title) in enumerate(zip(panels, titles)):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(img)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.suptitle(heading, fontsize=10)
    return fig


def robustness_figure(rows: list[dict], clean: float):
    """Heat map of accuracy, corruptions (rows, with their mean) x severities (columns)."""
    from matplotlib.figure import Figure

    names = list(dict.fromkeys(r["corruption"] for r in rows))
    severities = sorted({int(r["severity"]) for r in rows})
    acc = torch.full((len(names), len(severities)), float("nan"))
    for r in rows:
        acc[names.index(r["corruption"]), severities.index(int(r["severity"]))] = r["acc"]
    means = acc.nanmean(1)
    fig = Figure(figsize=(2.2 + 1.0 * (len(severities) + 1), 1.2 + 0.42 * len(names)), layout="constrained")
    ax = fig.add_subplot()
    table = torch.cat([acc, means[:, None]], 1)
    im = ax.imshow(table.numpy(), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(severities) + 1), [str(s) for s in severities] + ["mean"])
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
    ax.set_xlabel("severity")
    for i in range(len(names)):
        for j in range(len(severities) + 1):
            ax.text(j, i, f"{table[i, j]:.2f}", ha="center", va="center", fontsize=7)
    mean = float(acc.nanmean())
    ax.set_title(f"Accuracy under corruption: mean {mean:.3f}, clean {clean:.3f} (drop {clean - mean:.3f})",
                 fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="accuracy")
    return fig
