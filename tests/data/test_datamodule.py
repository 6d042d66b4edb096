"""The datamodule: split sizes, transforms that follow the model config, un-augmented eval batches,
batch-size checks, and the FrozenPhaseData contract the callbacks rely on."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from hydra.utils import instantiate

from cifar_ft.data.synthetic import SyntheticDataModule, synthetic_images
from cifar_ft.errors import ConfigError


def test_synthetic_datamodule_split_sizes(cfg_factory):
    cfg = cfg_factory("data.train_size=1000", "data.val_size=200", "data.test_size=300")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    assert (len(dm.splits["train"]), len(dm.splits["val"]), len(dm.splits["test"])) == (800, 200, 300)
    assert dm.class_names == [f"class_{i}" for i in range(10)]
    assert dm.splits["train"].images.dtype == torch.uint8


def test_synthetic_is_deterministic_and_structured():
    a, b = synthetic_images(200, 4, 32, seed=0), synthetic_images(200, 4, 32, seed=0)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    # class structure: class means differ far more than noise between two images of one class
    means = torch.stack([a.images[a.labels == c].float().mean(0) for c in range(4)])
    assert (means[0] - means[1]).abs().mean() > 10


@pytest.mark.parametrize("model,size,mean", [("vit_base", 224, 0.5), ("resnet18", 224, 0.485),
                                              ("tiny", 32, 0.5)])
def test_transforms_follow_the_model_config(cfg_factory, model, size, mean):
    cfg = cfg_factory(f"model={model}", "data.batch_size=4")
    dm = instantiate(cfg.data)
    assert dm.input_size == size and dm.mean[0] == pytest.approx(mean)
    x = torch.full((2, 3, 32, 32), 255, dtype=torch.uint8)
    out = dm.batch_transform(train=False)(x)
    assert out.shape == (2, 3, size, size) and out.dtype == torch.float32
    # white pixels normalise to (1 - mean) / std with this backbone's statistics
    expected = (1 - torch.tensor(dm.mean)) / torch.tensor(dm.std)
    assert torch.allclose(out[0, :, size // 2, size // 2], expected, atol=1e-5)


def _trainer_state(**state) -> SimpleNamespace:
    """What on_after_batch_transfer reads of a trainer: its stage flags and loop counters."""
    progress = SimpleNamespace(current=SimpleNamespace(ready=3, processed=1))
    loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress), epoch_progress=progress)
    flags = {"training": False, "validating": False, "testing": False, **state}
    return SimpleNamespace(fit_loop=loop, global_rank=0, precision="32-true", **flags)


def test_validation_batches_never_augmented(cfg_factory):
    """Inside a fit (trainer attached), validation batches get the eval transform while training
    batches of the same images are augmented: the two branches are told apart."""
    cfg = cfg_factory("data.augment=jitter")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    x, y = dm.splits["val"].images[:4], torch.zeros(4, dtype=torch.long)
    dm.trainer = _trainer_state(validating=True)
    val = dm.on_after_batch_transfer((x, y, torch.arange(4)), 0)[0]
    dm.trainer = _trainer_state(training=True)
    train = dm.on_after_batch_transfer((x, y, torch.arange(4)), 0)[0]
    dm.trainer = None
    plain = dm.batch_transform(False)(x)
    assert torch.equal(val, plain)
    assert not torch.allclose(train, plain)  # jitter changed them: this test can see augmentation


def test_batch_size_larger_than_data_is_rejected():
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=1000,
                             train_size=200, test_size=50, val_size=40)
    with pytest.raises(ConfigError, match="data.batch_size=1000 is larger than the training set"):
        dm.setup("fit")


def test_passes_per_epoch_lengthens_the_training_epoch(cfg_factory):
    cfg = cfg_factory("data.train_size=1000", "data.val_size=200", "data.test_size=100",
                      "data.batch_size=50", "data.passes_per_epoch=1.5")
    dm = instantiate(cfg.data)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 800 * 3 // 2 // 50  # 1.5 passes over 800 training images, in batches of 50
    assert sum(len(batch[1]) for batch in loader) == 1200


def test_passes_per_epoch_rejects_non_positive():
    with pytest.raises(ConfigError, match=r"data.passes_per_epoch=0.0 must be > 0"):
        SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, passes_per_epoch=0.0)
