"""Export without the framework: merged LoRA/DoRA and the peft adapter folder, loaded in a fresh process."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from cifar_ft.exports.peft import export_adapter
from cifar_ft.exports.timm_form import ExportInfo, to_timm, write_timm
from cifar_ft.models.factory import build_classifier
from cifar_ft.strategies.lora import LoRA

FRESH = """
import json, sys, torch, timm
from peft import PeftModel
d = sys.argv[1]
io = torch.load(d + "/io.pt")
merged = timm.create_model("local-dir:" + d + "/timm", pretrained=True).eval()
base = timm.create_model("local-dir:" + d + "/peft/base", pretrained=True).eval()
with torch.no_grad():
    base_logits = base(io["x"])
    adapted = PeftModel.from_pretrained(base, d + "/peft").eval()
    out = {"merged": (merged(io["x"]) - io["want"]).abs().max().item(),
           "peft": (adapted(io["x"]) - io["want"]).abs().max().item(),
           "base": (base_logits - io["want"]).abs().max().item(),
           "framework_imported": any(m.startswith("cifar_ft") for m in sys.modules)}
print(json.dumps(out))
"""


@pytest.mark.parametrize("use_dora", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["lora", "dora"])
def test_merged_export_and_peft_folder_give_our_logits_in_plain_timm_and_peft(tmp_path, use_dora):
    torch.manual_seed(0)
    model = build_classifier(backbone="vit_tiny_patch16_224", num_classes=10, pretrained=False, input_size=32,
                            strategy=LoRA(rank=4, use_dora=use_dora)).eval()
    with torch.no_grad():  # adapters as after training: B != 0, so merging changes the weights
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name or "magnitude" in name:
                p.add_(torch.randn_like(p) * 0.05)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    info = ExportInfo(class_names=[str(i) for i in range(10)], input_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                      eval_crop_pct=1.0, model_card="test")
    (tmp_path / "timm").mkdir()
    (tmp_path / "peft").mkdir()
    write_timm(to_timm(model), tmp_path / "timm", info)
    import warnings

    with warnings.catch_warnings(record=True) as caught:  # offline: no look-up of the base model on the hub
        warnings.simplefilter("always")
        files = export_adapter(model, tmp_path / "peft", info)
    noise = [str(w.message) for w in caught if "config file" in str(w.message) or "remote file" in str(w.message)]
    assert not noise, noise
    assert all(f.is_file() for f in files)
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())
    assert config["r"] == 4 and config["use_dora"] is use_dora and config["modules_to_save"] == ["head"]
    torch.save({"x": x, "want": want}, tmp_path / "io.pt")
    proc = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["merged"] < 1e-5 and got["peft"] < 1e-5
    assert got["base"] > 1e-3  # the adapters mattered: without them the logits differ
    assert not got["framework_imported"]


def test_peft_format_of_a_strategy_without_adapters_is_one_line(tmp_path):
    from cifar_ft.errors import ConfigError
    from cifar_ft.strategies.selective import BitFit

    model = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32, strategy=BitFit())
    with pytest.raises(ConfigError, match="format=peft needs a checkpoint of strategy=lora or dora"):
        export_adapter(model, tmp_path, None)


@pytest.mark.slow  # torch.export + ONNX of a ViT: ~40 s
def test_merged_lora_exports_as_plain_onnx_and_torch_export_models(tmp_path):
    from cifar_ft.exports.formats import export_onnx, export_torch

    torch.manual_seed(0)
    model = build_classifier(backbone="vit_tiny_patch16_224", num_classes=10, pretrained=False, input_size=32,
                            strategy=LoRA(rank=4)).eval()
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name:
                p.add_(torch.randn_like(p) * 0.05)
    info = ExportInfo(class_names=[str(i) for i in range(10)], input_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                      eval_crop_pct=1.0, model_card="test")
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    export_torch(model, tmp_path, info)
    program = torch.export.load(str(tmp_path / "model.pt2"))
    assert not any("lora" in n for n in program.state_dict)  # merged: timm's own parameters only
    assert (program.module()(x) - want).abs().max().item() < 1e-5
    export_onnx(model, tmp_path, info)  # checked against torch with onnxruntime inside (1e-3)
    import onnxruntime as ort

    got = ort.InferenceSession(str(tmp_path / "model.onnx")).run(None, {"images": x.numpy()})[0]
    assert abs(torch.from_numpy(got) - want).max().item() < 1e-4


@pytest.mark.slow  # torch.export of a prompted ViT: ~20 s
def test_vpt_has_no_timm_form_but_exports_as_a_traced_graph(tmp_path):
    from cifar_ft.errors import ConfigError
    from cifar_ft.exports.formats import export_torch
    from cifar_ft.exports.timm_form import export_timm
    from cifar_ft.strategies.vpt import VPT

    torch.manual_seed(0)
    model = build_classifier(backbone="vit_tiny_patch16_224", num_classes=10, pretrained=False, input_size=32,
                            strategy=VPT(tokens=3)).eval()
    info = ExportInfo(class_names=[str(i) for i in range(10)], input_size=32, mean=[0.5] * 3, std=[0.5] * 3,
                      eval_crop_pct=1.0, model_card="test")
    with pytest.raises(ConfigError, match="no plain timm"):
        export_timm(model, tmp_path, info)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        want = model(x)
    export_torch(model, tmp_path, info)
    got = torch.export.load(str(tmp_path / "model.pt2")).module()(x)
    assert (got - want).abs().max().item() < 1e-5
