"""Precise BatchNorm statistics: the recomputation itself, and a run whose checkpoint holds them."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from cifar_ft.callbacks.precise_bn import PreciseBatchNorm, recompute_statistics, updating_batchnorms
from cifar_ft.errors import ConfigError
from cifar_ft.runs.checkpoints import load_classifier
from cifar_ft.train import train


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 5, 1),
                                  nn.BatchNorm2d(5))
        self.device = torch.device("cpu")

    def features(self, x):
        return self.body(x)


def test_the_chosen_layers_get_the_population_statistics_and_the_others_keep_theirs():
    net = _Net().eval()
    first, second = net.body[1], net.body[4]
    first.running_mean.fill_(3.0)
    batches = [(torch.randn(8, 3, 6, 6) + i,) for i in range(3)]
    seen = recompute_statistics([second], net, batches, lambda x: x)
    with torch.no_grad():
        out = torch.cat([net.body[:4](x) for x, in batches])  # what `second` normalises
    assert seen == 24
    assert torch.allclose(second.running_mean, out.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(second.running_var, out.var((0, 2, 3), unbiased=True), rtol=1e-3)
    assert torch.equal(first.running_mean, torch.full((4,), 3.0))  # not chosen: untouched, eval statistics used
    assert second.momentum == 0.1 and not second.training


def test_only_layers_in_training_mode_count_as_updating():
    net = _Net().train()
    net.body[1].eval()  # what the freeze schedule does to a frozen layer
    assert updating_batchnorms(net) == [net.body[4]]


def test_images_must_be_positive():
    with pytest.raises(ConfigError, match="callbacks.precise_bn.images=0"):
        PreciseBatchNorm(0)


def test_ema_comes_first_so_the_averaged_weights_get_the_statistics(cfg_factory):
    from cifar_ft.callbacks.config import callback_order

    names = callback_order(list(cfg_factory("callbacks=[default,precise_bn,ema]").callbacks))
    assert names.index("ema") < names.index("precise_bn") and names[0] == "freeze"


def _saved_and_recomputed(cfg, images: int) -> tuple[dict, dict]:
    ckpt = next(Path(cfg.paths.output_dir, "checkpoints").glob("best-*.ckpt"))
    raw = torch.load(ckpt, weights_only=True)
    model = load_classifier(str(ckpt), False, raw).eval()
    saved = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    dm = instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.sample_loader("train", images, cfg.seed * 1_000_003 + raw["global_step"])
    recompute_statistics(updating_batchnorms(model.train()), model.eval(), loader, dm.eval_transform())
    return saved, {k: v for k, v in model.state_dict().items() if "running_mean" in k}


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_run_validates_and_saves_the_recomputed_statistics(cfg_factory):
    cfg = cfg_factory("callbacks=[default,precise_bn]", "callbacks.precise_bn.images=96",
                      "strategy.frozen_epochs=0", "trainer.max_epochs=1")
    train(cfg)
    saved, recomputed = _saved_and_recomputed(cfg, 96)
    assert saved.keys() == recomputed.keys() and saved
    for k in saved:
        assert torch.allclose(saved[k], recomputed[k], atol=1e-4), k


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_layer_kept_frozen_keeps_its_statistics(cfg_factory):
    cfg = cfg_factory("callbacks=[default,precise_bn]", "callbacks.precise_bn.images=96",
                      "strategy=partial", "strategy.frozen_groups=1",
                      "trainer.max_epochs=1", name="partial")
    train(cfg)
    ckpt = next(Path(cfg.paths.output_dir, "checkpoints").glob("best-*.ckpt"))
    model = load_classifier(str(ckpt), False, torch.load(ckpt, weights_only=True))
    stats = {k: v for k, v in model.state_dict().items() if "running_mean" in k}
    stem = [k for k in stats if k.startswith("backbone.bn1.") or k.startswith("backbone.stem")]
    assert stem and all(torch.equal(stats[k], torch.zeros_like(stats[k])) for k in stem)  # fresh init: zeros
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in stats.items() if k not in stem)
