"""The written contracts between independent layers: the concrete classes satisfy the Protocols."""
from __future__ import annotations

import functools

import torch

from cifar_ft.callbacks.throughput import TrainThroughput
from cifar_ft.contracts import (
    CalibratableModule,
    FinetunableModule,
    FrozenPhaseData,
    ResizableTrainData,
    RunFacts,
    StatisticsData,
)
from cifar_ft.data.synthetic import SyntheticDataModule
from cifar_ft.models.factory import build_classifier


def test_datamodule_is_frozen_phase_data():
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, train_size=100,
                             test_size=20, val_size=20)
    assert isinstance(dm, FrozenPhaseData)
    dm.setup("fit")
    assert dm.split_size("train") == 80 and dm.split_size("test") == 20 and dm.augmenting()
    dm.set_augment(False)
    dm.cache_features("train", torch.zeros(80, 4))
    assert not dm.augmenting() and dm.cached_splits() == ["train"]
    images, labels, index = next(iter(dm.ordered_loader("train")))
    assert images.dtype == torch.uint8 and index.tolist() == list(range(8))
    assert dm.eval_transform()(images).shape == (8, 3, 32, 32)
    dm.clear_features()
    assert dm.cached_splits() == [] and dm.preprocessing() == {"image_size": 32, "eval_crop_pct": 1.0}


def test_classifier_is_finetunable_and_adds_groups_at_their_scaled_lr():
    model = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32,
                             backbone_lr_mult=0.1, optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    assert isinstance(model, FinetunableModule)
    assert model.input_size == 32 and model.features(torch.randn(2, 3, 32, 32)).shape == (2, 96)
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    opt = model.configure_optimizers()
    assert [g["name"] for g in opt.param_groups] == ["head", "head/no_decay"]
    names = [n for n, _ in model.backbone.named_parameters() if n.startswith("layer4")]
    model.add_backbone_groups(opt, names, "backbone.4", step=7)
    joined = {g["name"]: g for g in opt.param_groups}
    for tag in ("backbone.4", "backbone.4/no_decay"):
        assert joined[tag]["initial_lr"] == 1e-3 * 0.1 and joined[tag]["start_step"] == 7
        assert joined[tag]["lr_scale"] == 0.1
    assert joined["backbone.4/no_decay"]["weight_decay"] == 0.0


def test_classifier_is_calibratable_and_temperature_scaling_reports_run_facts():
    from cifar_ft.callbacks.temperature import TemperatureScaling

    model = build_classifier(backbone="test_resnet", num_classes=10, pretrained=False, input_size=32).eval()
    assert isinstance(model, CalibratableModule)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        raw = model.tta_log_probs(x)
        assert torch.allclose(raw, model(x).log_softmax(-1), atol=1e-6)
        model.set_temperature(2.0)
        assert torch.allclose(model.predict_probs(x), (model(x) / 2).softmax(-1), atol=1e-6)
    assert isinstance(TemperatureScaling(), RunFacts) and TemperatureScaling().run_facts() == {}


def test_throughput_meter_reports_run_facts():
    meter = TrainThroughput()
    assert isinstance(meter, RunFacts) and meter.run_facts() == {}
    meter.last_images_per_sec = 123.0
    assert meter.run_facts() == {"train/images_per_sec": 123.0}


def test_datamodule_is_resizable_train_data_and_only_training_batches_change_size():
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, train_size=100,
                             test_size=20, val_size=20)
    assert isinstance(dm, ResizableTrainData) and dm.input_size == 32
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    dm.set_train_size(16)
    assert dm.batch_transform(True)(images).shape[-1] == 16 and dm.batch_transform(False)(images).shape[-1] == 32
    dm.set_train_size(None)
    assert dm.batch_transform(True)(images).shape[-1] == 32


def test_datamodule_is_statistics_data_drawing_a_seeded_sample_without_touching_the_global_rng():
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=8, train_size=100,
                             test_size=20, val_size=20)
    dm.setup("fit")
    assert isinstance(dm, StatisticsData)
    state = torch.get_rng_state()
    picks = [torch.cat([i for _, _, i in dm.sample_loader("train", 30, seed)]) for seed in (5, 5, 6)]
    assert torch.equal(torch.get_rng_state(), state)
    assert len(picks[0]) == 30 and len(set(picks[0].tolist())) == 30 and torch.equal(picks[0], picks[1])
    assert not torch.equal(picks[0], picks[2])
    assert len(torch.cat([i for _, _, i in dm.sample_loader("train", 1000, 0)])) == dm.split_size("train")
