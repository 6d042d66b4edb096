"""Eval tests the run's own held-out images by default, and refuses test images the run trained on."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cifar_ft.errors import find_user_error
from cifar_ft.eval import evaluate
from cifar_ft.train import train
from tests.conftest import make_cfg

RUN = ["data=image_folder", "model=tiny", "trainer.max_epochs=1", "strategy.frozen_epochs=0",
       "data.val_size=0.2", "data.test_size=0.2", "data.batch_size=16", "model.input_size=32"]


def image_folder(root: Path, per_class: int, seed: int, split: str = "train") -> Path:
    """3 classes of 32 px PNGs, each class a noisy colour (learnable)."""
    gen = torch.Generator().manual_seed(seed)
    for label, colour in enumerate(((200, 40, 40), (40, 200, 40), (40, 40, 200))):
        folder = root / split / f"class_{label}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            noise = torch.randint(-40, 40, (32, 32, 3), generator=gen)
            pixels = (torch.tensor(colour) + noise).clamp(0, 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(folder / f"{seed}_{i:03d}.png")
    return root


def evaluate_with(ckpt: str, out: Path, *data: str):
    return evaluate(make_cfg([f"ckpt_path={ckpt}", "trainer.enable_progress_bar=false", *data], out, "eval"))


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_eval_defaults_to_the_runs_own_held_out_split_and_refuses_training_images(cfg_factory, tmp_path):
    root = image_folder(tmp_path / "data", per_class=40, seed=0)
    cfg = cfg_factory(*RUN, f"data.root={root}", fast=False, name="run")
    train(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    best = metrics["best_ckpt"]
    # only ckpt_path: exactly the run's test images (24 of 120) and the run's own test accuracy
    own = evaluate_with(best, tmp_path / "e1")
    assert own["test_split"] == "the run's own" and own["num_test_images"] == 24
    assert own["test_split_is_the_runs"] and own["test_split_fingerprint"] == metrics["test_split_fingerprint"]
    assert own["test/acc"] == pytest.approx(metrics["test/acc"])
    # the same folder given with the run's settings: the same split, accepted
    same = evaluate_with(best, tmp_path / "e2", "data=image_folder", f"data.root={root}", "data.val_size=0.2",
                         "data.test_size=0.2")
    assert same["test_split_is_the_runs"] and same["test_images_seen_in_training"] == 0
    # eval's default split of the same folder holds training images: refused in one line, nothing written
    with pytest.raises(Exception) as info:
        evaluate_with(best, tmp_path / "e3", "data=image_folder", f"data.root={root}", "data.test_size=0.5")
    message = str(find_user_error(info.value))
    assert "were training or validation images of this run" in message and "\n" not in message
    assert not (tmp_path / "e3" / "metrics.json").exists()
    # a separate folder of new images works as before
    other = image_folder(tmp_path / "other", per_class=10, seed=1, split="test")
    new = evaluate_with(best, tmp_path / "e4", "data=image_folder", f"data.root={other}")
    assert new["num_test_images"] == 30 and new["test_images_seen_in_training"] == 0


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_eval_notices_that_the_runs_data_changed(cfg_factory, tmp_path):
    root = image_folder(tmp_path / "data", per_class=20, seed=0)
    cfg = cfg_factory(*RUN, f"data.root={root}", fast=False, name="run")
    train(cfg)
    best = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["best_ckpt"]
    for f in sorted((root / "train" / "class_0").iterdir())[:3]:  # files removed after training
        f.unlink()
    with pytest.raises(Exception) as info:
        evaluate_with(best, tmp_path / "e")
    assert "changed since training" in str(find_user_error(info.value))
