"""The probe head: the logistic fit itself, and a run whose first step starts from the fitted head."""
from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from cifar_ft.callbacks.probe_head import ProbeHead, fit_logistic, probe_features, probe_head
from cifar_ft.errors import ConfigError
from cifar_ft.runs.build import strategy_and_schedule


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """4 classes in 16 features on wildly different scales and far from the origin, as real
    backbone features are (post-activation means, a few large channels)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 16, generator=torch.Generator().manual_seed(0)) * 3
    y = torch.randint(0, 4, (n,), generator=g)
    x = centres[y] + torch.randn(n, 16, generator=g)
    scale = torch.logspace(-2, 2, 16)
    return x * scale + 50.0, y


def test_the_fit_classifies_new_samples_with_the_raw_features():
    x, y = _blobs(400, 1)
    weight, bias = fit_logistic(x, y, 4, l2=1e-3, max_iter=100)
    held_x, held_y = _blobs(400, 2)
    assert weight.shape == (4, 16) and bias.shape == (4,)
    # the weights are mapped back from the standardised fit: a wrong shift or scale misclassifies
    assert ((held_x @ weight.T + bias).argmax(1) == held_y).float().mean() > 0.95


def test_a_larger_penalty_gives_a_smaller_head():
    x, y = _blobs(400, 1)
    small = fit_logistic(x, y, 4, l2=1e-4, max_iter=100)[0]
    large = fit_logistic(x, y, 4, l2=1e-1, max_iter=100)[0]
    assert large.norm() < 0.5 * small.norm()


def test_bad_settings_are_one_line_and_null_is_off():
    with pytest.raises(ConfigError, match="callbacks.probe_head.images=1"):
        ProbeHead(1)
    with pytest.raises(ConfigError, match="l2=-1"):
        ProbeHead(64, l2=-1)
    assert probe_head(None) is None and isinstance(probe_head(64), ProbeHead)


class _Snapshot(L.Callback):
    """Head weight and every BatchNorm buffer as the training loop reaches it (`first`: before the
    probe in on_train_start; otherwise at the first batch, after it)."""

    def __init__(self, first: bool) -> None:
        self.first, self.head, self.bias, self.buffers = first, None, None, None

    def _take(self, pl_module) -> None:
        if self.head is None:
            self.head = pl_module.head.weight.detach().clone()
            self.bias = pl_module.head.bias.detach().clone()
            self.buffers = {k: v.clone() for k, v in pl_module.backbone.state_dict().items()
                            if "running" in k or "num_batches" in k}

    def on_train_start(self, trainer, pl_module) -> None:
        if self.first:
            self._take(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._take(pl_module)


def _fit_one_step(cfg, probe: ProbeHead | None):
    dm = instantiate(cfg.data)
    dm.setup("fit")
    torch.manual_seed(0)
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.class_names,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
                        strategy=instantiate(strategy_and_schedule(cfg.strategy)[0]))
    before, after = _Snapshot(first=True), _Snapshot(first=False)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        callbacks=[before, *([probe] if probe else []), after])
    trainer.fit(model, datamodule=dm)
    return dm, model, before, after


def _accuracy(model, dm, snapshot: _Snapshot) -> float:
    """Of the snapshot's head on the validation images' features, in training mode (as fitted)."""
    feats, labels = probe_features(model.train(), dm.sample_loader("val", 80, 0), dm.eval_transform())
    return float(((feats @ snapshot.head.T + snapshot.bias).argmax(1) == labels).float().mean())


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_the_first_step_starts_from_a_head_that_classifies_and_batchnorm_is_untouched(cfg_factory):
    cfg = cfg_factory("strategy.frozen_epochs=0")
    dm, model, before, after = _fit_one_step(cfg, ProbeHead(240, seed=3))
    assert not torch.equal(before.head, after.head)
    for key, value in before.buffers.items():  # the probe's forward passes left no trace in BatchNorm
        assert torch.equal(value, after.buffers[key]), key
    probe = [c for c in model.trainer.callbacks if isinstance(c, ProbeHead)][0]
    assert probe.accuracy > 0.5  # on its own 240 images; 10 classes, chance 0.1
    # the head the first step starts from classifies validation images it never saw; the random one
    # does not (features of the backbone after that one step: nearly the step-0 one)
    assert _accuracy(model, dm, after) > 0.4 > _accuracy(model, dm, before) + 0.15


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_without_the_probe_the_run_starts_from_the_random_head(cfg_factory):
    cfg = cfg_factory("strategy.frozen_epochs=0")
    *_, before, after = _fit_one_step(cfg, None)
    assert torch.equal(before.head, after.head)


def test_a_resumed_run_keeps_its_head(cfg_factory):
    cfg = cfg_factory("strategy.frozen_epochs=0")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    model = instantiate(cfg.model, num_classes=dm.num_classes, class_names=dm.class_names,
                        optimizer=instantiate(cfg.optimizer), scheduler=instantiate(cfg.scheduler),
                        strategy=instantiate(strategy_and_schedule(cfg.strategy)[0]))
    head = model.head.weight.detach().clone()

    class _Resumed:  # what on_train_start reads of a trainer resumed after step 5
        global_step, datamodule = 5, dm

    ProbeHead(64).on_train_start(_Resumed(), model)
    assert torch.equal(model.head.weight, head)


def test_the_probe_runs_after_the_freeze_schedule_has_set_the_modes(cfg_factory):
    from cifar_ft.callbacks.config import callback_order

    names = callback_order(list(reversed(list(cfg_factory("callbacks=[default,probe_head]").callbacks))))
    assert names.index("freeze") < names.index("probe_head")


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_more_probe_images_than_training_images_is_refused_before_any_is_extracted(cfg_factory):
    """The contract hands over all images when fewer exist; a probe of 100,000 on 400 training images
    is refused, naming the key and the largest valid value, not run on fewer than it says."""
    cfg = cfg_factory("strategy.frozen_epochs=0")
    with pytest.raises(ConfigError, match=r"callbacks.probe_head.images=100000 is more than the 400 training "
                                          r"images; valid: 2 to 400"):
        _fit_one_step(cfg, ProbeHead(100000, seed=3))
