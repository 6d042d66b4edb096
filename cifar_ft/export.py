"""`python -m cifar_ft.export ckpt_path=PATH [format=timm|onnx|torch_export|peft] [out=DIR]`: the model as
plain timm (Hugging Face layout, adapters merged), ONNX or torch.export files, or a peft adapter folder
(strategy=lora|dora), with a model card; no cifar_ft needed to use it."""
from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from cifar_ft.errors import check_choice
from cifar_ft.exports.folder import check_out, whole_folder
from cifar_ft.exports.formats import FORMATS
from cifar_ft.exports.model_card import model_card
from cifar_ft.exports.timm_form import ExportInfo
from cifar_ft.models.options import flat_hparams
from cifar_ft.runs.checkpoints import choose_temperature, load_classifier, read_checkpoint
from cifar_ft.runs.entry import command
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")


def export(cfg: DictConfig) -> list[Path]:
    validate_config(cfg)
    fmt = check_choice("format", cfg.format, FORMATS)
    trust = bool(cfg.get("trust_checkpoint", False))
    ckpt = read_checkpoint(cfg.ckpt_path, trust)
    hp, prep = flat_hparams(ckpt["hyper_parameters"]), ckpt.get("preprocessing") or {}
    out = Path(cfg.out) if cfg.get("out") else Path(cfg.paths.output_dir) / fmt
    check_out(out, bool(cfg.get("overwrite", False)))
    model = load_classifier(cfg.ckpt_path, trust, ckpt).eval()
    temperature = choose_temperature(model, cfg.get("calibrate"), cfg.ckpt_path)  # folded into the head
    size = int(hp.get("test_input_size") or hp["input_size"])  # FixRes: what the model is tested (and used) at
    info = ExportInfo(class_names=list(hp["class_names"]), input_size=size,
                      mean=list(hp["mean"]), std=list(hp["std"]),
                      eval_crop_pct=float(prep.get("eval_crop_pct", 1.0)),
                      model_card=model_card(cfg.ckpt_path, hp, fmt, temperature), temperature=temperature)
    with whole_folder(out) as tmp:  # appears complete or not at all
        files = [out / f.relative_to(tmp) for f in FORMATS[fmt](model, tmp, info)]
    log.info("Exported %s to %s: %s", cfg.ckpt_path, out, ", ".join(str(f.relative_to(out)) for f in files))
    print(f"exported ({fmt}): {out}")
    return files


main = command(export, "export")

if __name__ == "__main__":
    main()
