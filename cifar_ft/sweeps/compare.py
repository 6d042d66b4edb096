"""Comparing run directories that were not one sweep (e.g. two `outputs/train/<run>`): the config keys
that differ, the headline metrics side by side, and their curves in one figure."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from cifar_ft.errors import ConfigError
from cifar_ft.plain import read_data
from cifar_ft.reports.figures import read_scalars
from cifar_ft.runs.build import flatten

HEADLINE = ["val/acc_best", "test/acc", "test/f1_macro", "test/loss", "epochs", "wall_time_s", "train/images_per_sec"]


def _run(path: Path) -> dict:
    if not (path / "metrics.json").is_file():
        raise ConfigError(f"{str(path)!r} is not a finished run directory (no metrics.json)")
    metrics = read_data(path / "metrics.json", json.loads, dict)
    return {"dir": path, "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))},
            "config": flatten(read_data(path / ".hydra" / "config.yaml", yaml.safe_load, dict))}


def differing_keys(configs: list[dict]) -> list[str]:
    keys = sorted(set().union(*configs))
    return [k for k in keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1
            and not k.startswith("paths.")]


def compare(dirs: list[str | Path], out: str | Path) -> str:
    """Writes compare.md and compare.png into `out`; returns the markdown."""
    runs = [_run(Path(d)) for d in dirs]
    names = [f"{i}: {r['dir'].name}" for i, r in enumerate(runs)]
    keys = differing_keys([r["config"] for r in runs])
    header = "| | " + " | ".join(names) + " |\n|" + "---|" * (len(runs) + 1)
    lines = [f"# Comparing {len(runs)} runs", "", *[f"- {n}: `{r['dir']}`" for n, r in zip(names, runs)], "",
             "## Config keys that differ", "", header]
    lines += [f"| {k} | " + " | ".join(str(r["config"].get(k, "")) for r in runs) + " |" for k in keys]
    lines += ["", "## Metrics", "", header]
    for k in HEADLINE:
        if any(k in r["metrics"] for r in runs):
            lines.append(f"| {k} | " + " | ".join(_fmt(r["metrics"].get(k)) for r in runs) + " |")
    text = "\n".join(lines) + "\n"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text(text)
    _figure(runs, names).savefig(out / "compare.png", dpi=110)
    return text


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "" if value is None else str(value)


def _figure(runs: list[dict], names: list[str]):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(14, 4.5))
    loss_ax, acc_ax = fig.subplots(1, 2)
    for name, r in zip(names, runs):
        s = read_scalars(r["dir"] / "tensorboard") if (r["dir"] / "tensorboard").is_dir() else {}
        if s.get("train/loss"):
            loss_ax.plot(*zip(*s["train/loss"]), lw=0.8, label=name)
        val = [v for _, v in s.get("val/acc", []) if v == v]
        if val:
            acc_ax.plot(range(len(val)), val, marker="o", label=name)
    loss_ax.set(title="train loss per step", xlabel="optimizer step", ylabel="loss")
    acc_ax.set(title="val/acc per epoch", xlabel="epoch", ylabel="val/acc")
    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
