"""`format=peft`: a LoRA/DoRA run as a Hugging Face peft adapter folder for plain peft + timm.

    base = timm.create_model("local-dir:OUT/base", pretrained=True)   # or the hub model, num_classes=C
    model = peft.PeftModel.from_pretrained(base, "OUT")

OUT holds adapter_config.json + adapter_model.safetensors (the adapters, and the trained head as a
`modules_to_save` module) and, under base/, the timm model they were trained on (pretrained weights,
our head) in timm's Hugging Face layout, so the folder loads offline and gives our logits exactly.
The adapter file is written by peft itself (`get_peft_model` on that timm model, our adapter tensors
copied in by name, `save_pretrained`), so its layout is whatever the installed peft reads.
"""
from __future__ import annotations

from pathlib import Path

import torch

from cifar_ft.errors import ConfigError
from cifar_ft.exports.timm_form import ExportInfo, to_timm, write_timm
from cifar_ft.models.classifier import ImageClassifier


def export_adapter(model: ImageClassifier, out: Path, info: ExportInfo) -> list[Path]:
    strategy = model.strategy
    if not hasattr(strategy, "peft_config"):
        raise ConfigError(f"format=peft needs a checkpoint of strategy=lora or dora; this one is "
                          f"strategy={strategy.name} (export it with format=timm|onnx|torch_export)")
    from peft import get_peft_model

    net = to_timm(model, strategy.base(model.backbone))
    files = write_timm(net, out / "base", info)  # before get_peft_model injects adapters into `net`
    slot = net.pretrained_cfg["classifier"]  # two for a distilled DeiT, both holding our head
    slots = [slot] if isinstance(slot, str) else list(slot)
    peft_model = get_peft_model(net, strategy.peft_config(modules_to_save=slots))
    peft_model.peft_config["default"].base_model_name_or_path = str(model.options.backbone.name)
    ours = {n: p.detach() for n, p in model.backbone.named_parameters() if ".lora_" in n}
    theirs = dict(peft_model.base_model.model.named_parameters())
    missing = sorted(set(ours) - set(theirs))
    if missing:
        raise RuntimeError(f"peft placed the adapters elsewhere than training did: {missing[:3]}")
    with torch.no_grad():
        for name, tensor in ours.items():
            theirs[name].copy_(tensor)
    # a vision model has no embedding layers to save: saying so skips peft's look-up of the base model's
    # config on the hub (network noise, or a timeout, when offline)
    peft_model.save_pretrained(str(out), save_embedding_layers=False)
    (out / "README.md").write_text(info.model_card)
    return [out / "adapter_config.json", out / "adapter_model.safetensors", out / "README.md", *files]
