"""Reading a run (or sweep) directory back: what `notebooks/explore_run.ipynb` shows.

A run directory holds `.hydra/config.yaml`, `metrics.json`, `tensorboard/`, `per_class.csv` and
`test_predictions.csv` (one row per test image); a sweep directory holds numbered run directories
and `summary.csv` / `summary.md`.
"""
from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import torch

from cifar_ft.errors import ConfigError
from cifar_ft.reports.diagnostics import image_grid
from cifar_ft.reports.figures import confusion_figure, curves_figure
from cifar_ft.sweeps.summary import summarize


def run_dirs(path: str | Path) -> list[Path]:
    """The run directories at or under `path` (those with a metrics.json), in name order."""
    path = Path(path)
    if (path / "metrics.json").is_file():
        return [path]
    runs = sorted((p.parent for p in path.glob("*/metrics.json")), key=lambda p: (len(p.name), p.name))
    if not runs:
        raise ConfigError(f"{str(path)!r} is neither a run directory (metrics.json) nor a sweep directory "
                          "(numbered runs with metrics.json)")
    return runs


def newest_training_run(outputs: str | Path) -> Path:
    """The newest training run (or sweep) under `outputs`: a metrics.json beside checkpoints/ (eval and
    predict directories hold no checkpoints; a sweep's jobs count as its runs)."""
    found = sorted((p for p in Path(outputs).glob("**/metrics.json") if (p.parent / "checkpoints").is_dir()),
                   key=lambda p: p.stat().st_mtime)
    if not found:
        raise ConfigError(f"no training run under {str(outputs)!r}: train one (python -m cifar_ft.train "
                          "experiment=smoke) or set RUN_DIR / CIFAR_FT_RUN_DIR")
    return found[-1].parent


def sweep_summary(path: str | Path, metric: str = "val/acc_best") -> tuple[str, Path]:
    """The sweep's summary table (markdown, regenerated from its runs) and its best run directory."""
    rows = summarize(path, metric)
    text = (Path(path) / "summary.md").read_text()
    best = [r for r in rows if r.get("status") == "ok"]
    if not best:
        raise ConfigError(f"sweep {str(path)!r}: no run finished")
    return text, Path(path) / str(best[0]["job"])


def metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())


def predictions(run: Path) -> list[dict]:
    """test_predictions.csv rows with typed fields."""
    with (run / "test_predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["index"], r["correct"] = int(r["index"]), r["correct"] == "1"
        r["confidence"], r["label_probability"] = float(r["confidence"]), float(r["label_probability"])
    return rows


def class_names(run: Path) -> list[str]:
    with (run / "per_class.csv").open() as f:
        return [r["class"] for r in csv.DictReader(f)]


def per_class_markdown(run: Path) -> str:
    """per_class.csv (precision, recall, F1, support per class) as a markdown table."""
    with (run / "per_class.csv").open() as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in body])


def confusion_from_predictions(rows: list[dict], names: list[str]) -> torch.Tensor:
    position = {n: i for i, n in enumerate(names)}
    matrix = torch.zeros(len(names), len(names), dtype=torch.long)
    for r in rows:
        matrix[position[r["label"]], position[r["prediction"]]] += 1
    return matrix


def confident_mistakes(rows: list[dict], n: int = 12) -> list[dict]:
    """The `n` wrong predictions made with the highest confidence."""
    wrong = [r for r in rows if not r["correct"]]
    return sorted(wrong, key=lambda r: -r["confidence"])[:n]


def test_images(run: Path, indices: list[int]) -> torch.Tensor:
    """uint8 (N, 3, H, W) test images by index, rebuilt from the run's own data config: a registered data
    module and its plain options (`data.registry.check_record`), never a `_target_` the folder names."""
    from omegaconf import OmegaConf

    from cifar_ft.data.registry import build_data, check_record

    where = f"{run / '.hydra' / 'config.yaml'}"
    try:
        data = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml").data, resolve=True)
    except Exception as exc:  # noqa: BLE001 - unreadable YAML, no data node, an interpolation that fails
        raise ConfigError(f"{where}: cannot read the run's data config ({str(exc).splitlines()[0]})") from exc
    name, options = check_record(data, where)
    hydra_file = run / ".hydra" / "hydra.yaml"
    cwd = OmegaConf.load(hydra_file).hydra.runtime.cwd if hydra_file.is_file() else os.getcwd()
    if not isinstance(cwd, str):
        raise ConfigError(f"{hydra_file}: hydra.runtime.cwd is not a path")
    previous = os.getcwd()
    os.chdir(cwd)  # relative data paths are relative to where the run was started
    try:
        datamodule = build_data(name, {**options, **({"download": False} if name == "cifar" else {})})
        datamodule.setup("test")
        dataset = datamodule.ordered_loader("test").dataset
        return torch.stack([dataset[i][0] for i in indices])
    finally:
        os.chdir(previous)


def mistakes_figure(images: torch.Tensor, rows: list[dict], columns: int = 6):
    """Runs without mistakes.png (older ones, or no grad-cam): the images, without maps."""
    titles = [f"#{r['index']}: {r['prediction']} {r['confidence']:.0%}\ntrue: {r['label']}" for r in rows]
    return image_grid([img.permute(1, 2, 0).numpy() for img in images], titles,
                      "most confidently misclassified test images (prediction, confidence; true class)", columns,
                      panel=2.2)


def curves(run: Path):
    """The run's curves, or None when it logged none (a run too short to log)."""
    return curves_figure(run / "tensorboard")


def confusion(run: Path):
    """The test confusion matrix, or None when the run wrote no test predictions (pruned, stopped)."""
    if not (run / "test_predictions.csv").is_file() or not (run / "per_class.csv").is_file():
        return None
    names = class_names(run)
    return confusion_figure(confusion_from_predictions(predictions(run), names), names)


def png(fig) -> bytes:
    """A figure as PNG bytes (shown with IPython.display.Image: independent of the backend)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()
