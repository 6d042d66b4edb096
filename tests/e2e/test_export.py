"""Export: the fine-tuned model leaves the framework as plain timm (loaded by timm itself in a fresh
process), ONNX (onnxruntime) and torch.export, giving cifar_ft.predict's probabilities."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cifar_ft.data.synthetic import synthetic_images
from cifar_ft.export import export
from cifar_ft.predict import predict
from tests.conftest import make_cfg

TIMM_IN_A_FRESH_PROCESS = """
import json, sys, timm, torch
from PIL import Image
model = timm.create_model("local-dir:" + sys.argv[1], pretrained=True).eval()
transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
x = torch.stack([transform(Image.open(p).convert("RGB")) for p in sys.argv[2:]])
with torch.no_grad():
    print(json.dumps({"labels": model.pretrained_cfg["label_names"], "probs": model(x).softmax(-1).tolist()}))
"""


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("images")
    data = synthetic_images(8, 10, 32, seed=0, split_offset=1)
    paths = []
    for i, img in enumerate(data.images):
        paths.append(str(folder / f"{i}.png"))
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def predicted(smoke_run, images, tmp_path_factory) -> torch.Tensor:
    """cifar_ft.predict's probabilities (N, 10), in class order."""
    cfg = make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt", f"inputs=[{','.join(images)}]", "top_k=10"],
                   tmp_path_factory.mktemp("predict"), "predict")
    rows = predict(cfg)
    order = [f"class_{i}" for i in range(10)]
    return torch.tensor([[{t["class"]: t["probability"] for t in r["top_k"]}[c] for c in order] for r in rows])


def run_export(smoke_run, tmp_path, fmt: str):
    cfg = make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt", f"format={fmt}", f"out={tmp_path / fmt}"],
                   tmp_path, "export")
    return export(cfg)


def test_timm_folder_loads_in_plain_timm_with_the_same_probabilities(smoke_run, images, predicted, tmp_path):
    files = run_export(smoke_run, tmp_path, "timm")
    assert sorted(f.name for f in files) == ["README.md", "config.json", "model.safetensors"]
    proc = subprocess.run([sys.executable, "-c", TIMM_IN_A_FRESH_PROCESS, str(tmp_path / "timm"), *images],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["labels"] == [f"class_{i}" for i in range(10)]
    assert (torch.tensor(out["probs"]) - predicted).abs().max() <= 1e-5
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 10
    assert config["pretrained_cfg"]["mean"] == [0.5, 0.5, 0.5] and config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    card = (tmp_path / "timm" / "README.md").read_text()
    acc = json.loads((smoke_run / "metrics.json").read_text())["test/acc"]
    assert f"| test/acc | {acc:.4f} |" in card and "library_name: timm" in card
    assert "python -m cifar_ft.train experiment=smoke trainer.max_epochs=2" in card


def test_onnx_matches_predict_through_onnxruntime(smoke_run, images, predicted, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    run_export(smoke_run, tmp_path, "onnx")
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    pixels = torch.stack([torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1) for p in images])
    x = (pixels.float() / 255 - 0.5) / 0.5  # the exported model's input: its mean and std
    logits = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert logits.shape == (len(images), 10)
    assert (logits.softmax(-1) - predicted).abs().max() <= 1e-4


def test_torch_export_program_runs_any_batch_size(smoke_run, tmp_path):
    run_export(smoke_run, tmp_path, "torch_export")
    program = torch.export.load(str(tmp_path / "torch_export" / "model.pt2")).module()
    for batch in (1, 5):
        assert program(torch.randn(batch, 3, 32, 32)).shape == (batch, 10)


def test_export_never_replaces_a_folder_silently_and_writes_it_whole(smoke_run, tmp_path, monkeypatch):
    from cifar_ft.errors import ConfigError
    from cifar_ft.exports import formats as export_formats

    out = tmp_path / "timm"
    out.mkdir()
    (out / "config.json").write_text("{}")  # someone's earlier export
    with pytest.raises(ConfigError, match="is not empty .*overwrite=true"):
        run_export(smoke_run, tmp_path, "timm")
    assert (out / "config.json").read_text() == "{}" and len(list(out.iterdir())) == 1

    def killed(net, folder, info):  # an export that dies half-way: weights written, no config
        (folder / "model.safetensors").write_bytes(b"new")
        raise KeyboardInterrupt
    monkeypatch.setitem(export_formats.FORMATS, "timm", killed)
    cfg = make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt", "format=timm", f"out={out}", "overwrite=true"],
                   tmp_path, "export")
    with pytest.raises(KeyboardInterrupt):
        export(cfg)
    assert sorted(p.name for p in out.iterdir()) == ["config.json"]  # untouched: no new weights beside it
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".timm.")]  # no temporary folder left
    monkeypatch.undo()
    files = export(cfg)  # overwrite=true: the folder now holds exactly the new export
    assert sorted(p.name for p in out.iterdir()) == sorted(f.name for f in files)
    assert json.loads((out / "config.json").read_text())["num_classes"] == 10


def test_export_out_that_is_a_file_is_one_line(smoke_run, tmp_path):
    from cifar_ft.errors import ConfigError

    (tmp_path / "f").write_text("x")
    cfg = make_cfg([f"ckpt_path={smoke_run}/checkpoints/last.ckpt", f"out={tmp_path / 'f'}"], tmp_path, "export")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        export(cfg)
