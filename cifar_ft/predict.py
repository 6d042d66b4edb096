"""`python -m cifar_ft.predict ckpt_path=PATH inputs=[img.jpg,dir/]`: top-k classes per image."""
from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig
from torch import nn

from cifar_ft.data.folder_source import BAD_IMAGE_POLICIES
from cifar_ft.data.images import IMAGE_SUFFIXES, decode_image
from cifar_ft.data.transforms import BatchTransform
from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.models.options import flat_hparams
from cifar_ft.reports.explain import write_explanations
from cifar_ft.runs.checkpoints import choose_temperature, load_classifier, read_checkpoint
from cifar_ft.runs.entry import command
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")


def find_images(inputs: list[str]) -> list[Path]:
    """Files as given, directories searched recursively for image suffixes; each path once, in order."""
    if not inputs:
        raise ConfigError("inputs=[] names no image; give image files and/or folders, e.g. inputs=[cat.jpg,photos/]")
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            images = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ConfigError(f"inputs: directory {item!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"inputs: {item!r} is neither an image file nor a directory")
    return list(dict.fromkeys(found))


def load_images(paths: list[Path], size: int, on_bad_image: str) -> tuple[list[Path], torch.Tensor, list[str]]:
    """uint8 (N, 3, size, size) of the readable images; the unreadable ones are listed (or fail)."""
    good, tensors, bad = [], [], []
    for path in paths:
        img = decode_image(str(path), size, str(path))
        if img is None:
            bad.append(str(path))
            continue
        good.append(path)
        tensors.append(img)
    if bad and (on_bad_image == "error" or not good):
        raise ConfigError(f"cannot read {len(bad)} of {len(paths)} input images: {', '.join(bad[:5])}"
                          + (" ..." if len(bad) > 5 else ""))
    if bad:
        log.warning("skipped %d unreadable images: %s", len(bad), ", ".join(bad))
    return good, torch.stack(tensors), bad


@torch.inference_mode()
def classify(model: nn.Module, images: torch.Tensor, transform: BatchTransform, batch_size: int,
             device: torch.device, tta: str | None = None) -> torch.Tensor:
    """Class probabilities (N, num_classes), float32 on the CPU (`tta`: default the checkpoint's; the
    model's temperature applied)."""
    model.eval().to(device)
    out = []
    for start in range(0, len(images), batch_size):
        x = transform(images[start:start + batch_size].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model.predict_probs(x, tta).cpu())
    return torch.cat(out)


def top_k_rows(paths: list[Path], probs: torch.Tensor, class_names: list[str], k: int) -> list[dict]:
    values, indices = probs.topk(min(k, probs.shape[1]), dim=1)
    return [{"path": str(p), "top_k": [{"class": class_names[i], "probability": round(float(v), 6)}
                                       for v, i in zip(vals.tolist(), idx.tolist())]}
            for p, vals, idx in zip(paths, values, indices)]


def write_outputs(rows: list[dict], skipped: list[str], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    k = max(len(r["top_k"]) for r in rows)
    csv_path, json_path = out_dir / "predictions.csv", out_dir / "predictions.json"
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path"] + [f"{name}{i}" for i in range(1, k + 1) for name in ("class", "prob")])
        for r in rows:
            writer.writerow([r["path"]] + [x for t in r["top_k"] for x in (t["class"], t["probability"])])
    json_path.write_text(json.dumps({"predictions": rows, "skipped": skipped}, indent=2) + "\n")
    return csv_path, json_path


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    k = max(len(r["top_k"]) for r in rows)
    table = Table(title=f"top-{k} predictions")
    table.add_column("image", overflow="fold")
    for i in range(1, k + 1):
        table.add_column(f"#{i}")
    for r in rows:
        table.add_row(r["path"], *(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"]))
    Console(width=max(120, 30 + 22 * k)).print(table)


def resolve_device(value: str) -> torch.device:
    """`auto`: cuda if available, else cpu; any other value was checked by validate_config."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(value)


def predict(cfg: DictConfig) -> list[dict]:
    validate_config(cfg)
    check_choice("on_bad_image", cfg.on_bad_image, BAD_IMAGE_POLICIES)
    if int(cfg.top_k) < 1:
        raise ConfigError(f"top_k={cfg.top_k} must be >= 1")
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = read_checkpoint(cfg.ckpt_path, trust)
    hp, prep = flat_hparams(ckpt["hyper_parameters"]), ckpt.get("preprocessing") or {}
    inputs = list(cfg.inputs) if isinstance(cfg.inputs, (list, ListConfig)) else [str(cfg.inputs)]
    paths, images, skipped = load_images(find_images(inputs), int(prep.get("image_size") or hp["input_size"]),
                                         cfg.on_bad_image)
    device = resolve_device(str(cfg.device))
    model = load_classifier(cfg.ckpt_path, trust, ckpt)
    choose_temperature(model, cfg.get("calibrate"), cfg.ckpt_path)
    size = hp.get("test_input_size") or hp["input_size"]  # FixRes: the size the run tested at
    transform = BatchTransform(size, hp["mean"], hp["std"], train=False, preset="none",
                               eval_crop_pct=float(prep.get("eval_crop_pct", 1.0)))
    probs = classify(model, images, transform, int(cfg.batch_size), device, cfg.get("tta"))
    rows = top_k_rows(paths, probs, model.class_names, int(cfg.top_k))
    print_table(rows)
    csv_path, json_path = write_outputs(rows, skipped, Path(cfg.paths.output_dir))
    log.info("Wrote %s and %s", csv_path, json_path)
    if cfg.get("explain"):
        maps = write_explanations(model, images, transform, paths, probs, model.class_names,
                                  Path(cfg.paths.output_dir) / "explain", device)
        log.info("Wrote %d class-activation overlays to %s", len(maps), Path(cfg.paths.output_dir) / "explain")
    return rows


main = command(predict, "predict")

if __name__ == "__main__":
    main()
