"""`python -m cifar_ft.export ckpt_path=PATH [format=timm|onnx|torch_export] [out=DIR]`: the model as
plain timm (Hugging Face layout), ONNX or torch.export files, with a model card; no cifar_ft needed to use it."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from cifar_ft.errors import check_choice
from cifar_ft.runs.checkpoints import load_classifier, read_checkpoint
from cifar_ft.runs.entry import command
from cifar_ft.runs.export_formats import FORMATS, ExportInfo, to_timm
from cifar_ft.runs.model_card import model_card
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")


def export(cfg: DictConfig) -> list[Path]:
    validate_config(cfg)
    fmt = check_choice("format", cfg.format, FORMATS)
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = read_checkpoint(cfg.ckpt_path, trust)
    hp, prep = dict(ckpt["hyper_parameters"]), ckpt.get("preprocessing") or {}
    out = Path(cfg.out) if cfg.get("out") else Path(cfg.paths.output_dir) / fmt
    out.mkdir(parents=True, exist_ok=True)
    net = to_timm(load_classifier(cfg.ckpt_path, trust))
    info = ExportInfo(class_names=list(hp["class_names"]), input_size=int(hp["input_size"]),
                      mean=list(hp["mean"]), std=list(hp["std"]),
                      eval_crop_pct=float(prep.get("eval_crop_pct", 1.0)),
                      model_card=model_card(cfg.ckpt_path, hp, fmt))
    files = FORMATS[fmt](net, out, info)
    log.info("Exported %s to %s: %s", cfg.ckpt_path, out, ", ".join(f.name for f in files))
    print(f"exported ({fmt}): {out}")
    return files


main = command(export, "export")

if __name__ == "__main__":
    main()
