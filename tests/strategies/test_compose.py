"""Strategies compose with the rest of the harness: EMA, mixed precision, TTA, eval, predict, compile, sweeps."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_ft.eval import evaluate
from cifar_ft.predict import predict
from cifar_ft.train import train
from tests.conftest import FAST, ROOT, make_cfg

SHORT = ["trainer.max_epochs=2", "data.train_size=192", "data.val_size=32", "data.test_size=64"]


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_lora_with_ema_bf16_and_tta_evaluates_and_predicts_from_its_small_checkpoint(cfg_factory, resnet_weights,
                                                                                      tmp_path):
    cfg = cfg_factory(*SHORT, "strategy=lora", f"model.pretrained={resnet_weights}", "callbacks=[default,ema]",
                      "callbacks.ema.decay=0.9", "trainer.precision=bf16-mixed", "tta=flip")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    ckpt = torch.load(metrics["best_ckpt"], map_location="cpu", weights_only=True)
    assert "base_weights" in ckpt and "current_model_state" in ckpt  # EMA's live weights, slimmed too
    assert ckpt["state_dict"].keys() == ckpt["current_model_state"].keys()
    assert not any(k.endswith("conv.weight") or k.endswith("base_layer.weight") for k in ckpt["state_dict"])
    ecfg = make_cfg([f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", "data.train_size=192", "data.val_size=32",
                     "data.test_size=64", "trainer.enable_progress_bar=false"], tmp_path / "eval", "eval")
    assert evaluate(ecfg)["test/acc"] == pytest.approx(metrics["test/acc"])  # EMA weights, flip TTA, rebuilt base
    from PIL import Image

    image = tmp_path / "x.png"
    Image.new("RGB", (32, 32), (120, 30, 200)).save(image)
    rows = predict(make_cfg([f"ckpt_path={metrics['best_ckpt']}", f"inputs=[{image}]"], tmp_path / "p", "predict"))
    assert len(rows) == 1 and rows[0]["top_k"]


@pytest.mark.slow  # compiles: ~20 s
def test_compiled_lora_trains_and_its_checkpoint_loads(cfg_factory):
    cfg = cfg_factory(*SHORT, "strategy=lora", "model.compile=true", "model.compile_backend=aot_eager")
    train(cfg)
    from cifar_ft.runs.checkpoints import load_classifier

    model = load_classifier(str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"))
    assert model.strategy.name == "lora" and any(".lora_" in n for n, _ in model.backbone.named_parameters())


@pytest.mark.slow  # three jobs: ~40 s
def test_strategy_is_a_sweepable_override(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", *FAST, *SHORT, "strategy=full,lora,bitfit",
                           f"hydra.sweep.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with (tmp_path / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    pct = {r["overrides"]: float(r["trainable_pct"]) for r in rows}
    assert pct["strategy=full"] == pytest.approx(100.0)
    assert 0 < pct["strategy=bitfit"] < pct["strategy=lora"] < 10
