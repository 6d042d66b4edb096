"""Small checkpoints of strategies that keep the base frozen: a tenth of a full one or less, exact
eval/export from them, and a one-line error when the base weights are not the ones trained from."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cifar_ft.errors import find_user_error
from cifar_ft.eval import evaluate
from cifar_ft.train import train
from tests.conftest import make_cfg

VIT = ["model=vit_tiny", "model.input_size=32", "model.batch_size=32", "trainer.max_epochs=1",
       "data.train_size=128", "data.val_size=32", "data.test_size=64"]


def vit_weights(path: Path, seed: int) -> str:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    net = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=32)
    save_file(net.state_dict(), str(path))
    return str(path)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_lora_checkpoints_are_small_and_evaluate_exactly_and_check_the_base(cfg_factory, tmp_path):
    weights = vit_weights(tmp_path / "base.safetensors", seed=0)
    lora = cfg_factory(*VIT, "strategy=lora", f"model.pretrained={weights}", name="lora")
    full = cfg_factory(*VIT, "strategy=full", "strategy.frozen_epochs=0", f"model.pretrained={weights}",
                       name="full")
    train(lora)
    train(full)
    small, big = (Path(c.paths.output_dir) / "checkpoints" / "last.ckpt" for c in (lora, full))
    assert small.stat().st_size <= big.stat().st_size / 10
    ckpt = torch.load(small, map_location="cpu", weights_only=True)
    assert ckpt["base_weights"]["count"] > 0 and len(ckpt["base_weights"]["sha256"]) == 64
    assert not any(k.endswith("qkv.base_layer.weight") for k in ckpt["state_dict"])
    metrics = json.loads((Path(lora.paths.output_dir) / "metrics.json").read_text())
    assert metrics["strategy"] == "lora" and 0 < metrics["trainable_pct"] < 10
    assert metrics["checkpoint_mb"] < json.loads((Path(full.paths.output_dir) / "metrics.json").read_text())[
        "checkpoint_mb"] / 10

    def evaluate_with(name: str):
        ecfg = make_cfg([f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", "data.train_size=128",
                         "data.val_size=32", "data.test_size=64", "trainer.enable_progress_bar=false"],
                        tmp_path / name, "eval")
        return evaluate(ecfg)

    assert evaluate_with("eval")["test/acc"] == pytest.approx(metrics["test/acc"])
    vit_weights(Path(weights), seed=1)  # the base weights file changed after training
    with pytest.raises(Exception) as info:
        evaluate_with("eval2")
    message = str(find_user_error(info.value))
    assert "sha256" in message and "\n" not in message and "model.pretrained" in message


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_random_init_base_is_never_left_out(cfg_factory):
    """model.pretrained=false cannot be rebuilt, so such runs keep full checkpoints."""
    cfg = cfg_factory(*VIT, "strategy=bitfit", "model.pretrained=false")
    train(cfg)
    ckpt = torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=True)
    assert "base_weights" not in ckpt and any(k.endswith("attn.qkv.weight") for k in ckpt["state_dict"])
