"""The model card (README.md) of an exported model: what it is, how well it did, how it was made.

Read from the checkpoint's run directory: metrics.json (test metrics), .hydra/config.yaml (data and
training config) and .hydra/overrides.yaml (the command). Hugging Face hub front matter included."""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import yaml

from cifar_ft.plain import read_data

HEADLINE = ["test/acc", "test/acc_top5", "test/f1_macro", "test/precision_macro", "test/recall_macro",
            "test/loss", "val/acc_best"]


def _run_dir(ckpt_path: str) -> Path:
    return Path(ckpt_path).resolve().parent.parent  # <run>/checkpoints/<name>.ckpt


def _text(value: object) -> str:
    return value if isinstance(value, str) else "?"


def model_card(ckpt_path: str, hparams: dict, fmt: str, temperature: float = 1.0) -> str:
    run = _run_dir(ckpt_path)
    metrics = read_data(run / "metrics.json", json.loads, dict)
    config = read_data(run / ".hydra" / "config.yaml", yaml.safe_load, dict)
    overrides = [o for o in read_data(run / ".hydra" / "overrides.yaml", yaml.safe_load, list) if isinstance(o, str)]
    names = list(hparams["class_names"])
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    front = {"library_name": "timm", "tags": ["image-classification", "timm", "cifar_ft"],
             "pipeline_tag": "image-classification", "base_model": f"timm/{hparams['backbone']}"}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {hparams['backbone']} fine-tuned on {len(names)} classes ({fmt} export)", "",
             f"{'An ImageNet-pretrained' if hparams.get('pretrained') else 'A'} `{hparams['backbone']}` with a new "
             f"{len(names)}-way classifier, trained with cifar_ft. Classes, in output order: " + ", ".join(names) + ".",
             "",
             "## Results", ""]
    rows = [(k, metrics[k]) for k in HEADLINE if isinstance(metrics.get(k), (int, float))]
    if rows:
        lines += ["| metric | value |", "|---|---|"] + [f"| {k} | {v:.4f} |" for k, v in rows]
        best = metrics.get("best_ckpt")
        tested = Path(best if isinstance(best, str) and best else ckpt_path).name
        lines += ["", f"From the run's metrics.json: its test split, with the checkpoint `{tested}`; this "
                  f"export is of `{Path(ckpt_path).name}`."]
    else:
        lines.append(f"No metrics.json found in {run}.")
    size = hparams.get("test_input_size") or hparams["input_size"]  # FixRes: the size it was tested at
    lines += ["", "## Input", "",
              f"RGB images at {size} x {size} px, scaled to [0, 1] and "
              f"normalised with mean {list(hparams['mean'])} and std {list(hparams['std'])}. Training images "
              "were stored at their native size and resized bilinearly on the device.", "",
              *([f"Calibrated by temperature scaling (T = {temperature:.4f}, fitted on the validation split): "
                 "1/T is folded into the classifier, so the softmax of the outputs is the calibrated "
                 "probabilities.", ""] if temperature != 1.0 else []),
              "## Training", "",
              f"Data: `{_text(data.get('_target_'))}`" + (f", root `{_text(data['root'])}`" if data.get("root") else "")
              + f"; augmentation `{_text(data.get('augment'))}`.", "",
              "Command: `python -m cifar_ft.train " + " ".join(map(str, overrides)) + "`", "",
              f"Trained at git commit `{metrics.get('git_commit', '?')}` with seed {metrics.get('seed', '?')}; "
              f"{metrics.get('epochs', '?')} epochs; exported {datetime.date.today().isoformat()}.", "",
              "## Use", "", "```python", "import timm",
              'model = timm.create_model("local-dir:PATH_TO_THIS_FOLDER", pretrained=True).eval()',
              "cfg = timm.data.resolve_data_config({}, model=model)",
              "transform = timm.data.create_transform(**cfg)", "```", ""]
    return "\n".join(lines)
