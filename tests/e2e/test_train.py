"""End to end through the real conf/: train -> checkpoint -> eval; run directory; experiments compose."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from cifar_ft.errors import find_user_error
from cifar_ft.eval import evaluate
from cifar_ft.train import train
from tests.conftest import CONF_DIR, ROOT, make_cfg


def scalars(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = []
    for f in sorted(tb_dir.glob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f))
        acc.Reload()
        if tag in acc.Tags().get("scalars", []):
            out += [(e.step, e.value) for e in acc.Scalars(tag)]
    return out


def test_train_checkpoint_eval_roundtrip(cfg_factory, tmp_path):
    cfg = cfg_factory("trainer.max_epochs=3", "optimizer.lr=5e-3")
    result = train(cfg)
    out = Path(cfg.paths.output_dir)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("test/acc", "test/f1_macro", "test/precision_macro", "test/recall_macro", "test/acc_top5",
                "test/loss", "test/acc_class/class_0", "seed", "wall_time_s", "train/images_per_sec", "git_commit"):
        assert key in metrics, key
    assert metrics["test/acc"] > 0.3  # 10 classes: chance is 0.1; the synthetic task is learnable
    assert result == pytest.approx(metrics["val/acc_best"])
    assert (out / "checkpoints" / "last.ckpt").is_file() and metrics["best_ckpt"].endswith(".ckpt")
    per_class = [metrics[f"test/acc_class/class_{i}"] for i in range(10)]
    assert sum(per_class) / 10 == pytest.approx(metrics["test/recall_macro"], abs=1e-4)
    # eval of the best checkpoint on the same test split reproduces the test metrics
    ecfg = make_cfg([f"ckpt_path={metrics['best_ckpt']}", "data=synthetic", "data.train_size=480",
                     "data.val_size=80", "data.test_size=160", "trainer.enable_progress_bar=false"],
                    tmp_path / "eval", "eval")
    emetrics = evaluate(ecfg)
    assert emetrics["test/acc"] == pytest.approx(metrics["test/acc"])
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["test/acc"] == pytest.approx(metrics["test/acc"]) and saved["num_test_images"] == 160
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["class_names"] == [f"class_{i}" for i in range(10)]
    assert not any("_orig_mod" in k for k in ckpt["state_dict"])


def test_eval_refuses_other_classes(cfg_factory, tmp_path):
    cfg = cfg_factory("trainer.max_epochs=1", "strategy.frozen_epochs=0")
    train(cfg)
    ecfg = make_cfg([f"ckpt_path={cfg.paths.output_dir}/checkpoints/last.ckpt", "data=synthetic",
                     "data.num_classes=5", "data.train_size=200", "data.val_size=50"], tmp_path / "e", "eval")
    with pytest.raises(Exception) as info:
        evaluate(ecfg)
    msg = str(find_user_error(info.value))
    assert "trained on 10 classes" in msg and "data set has 5 classes" in msg and "class_9" in msg


def test_smoke_command_offline(tmp_path):
    """The acceptance command, as a user runs it: exit 0, metrics.json, last.ckpt, TB events."""
    out = tmp_path / "smoke"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "experiment=smoke", f"hydra.run.dir={out}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test/acc", "test/f1_macro"} <= set(metrics)
    assert (out / "checkpoints" / "last.ckpt").is_file() and (out / ".hydra" / "config.yaml").is_file()
    trainable = scalars(out / "tensorboard", "train/trainable_params")
    assert len(trainable) == 2 and trainable[0][1] < trainable[1][1]
    assert scalars(out / "tensorboard", "train/loss")  # per-step loss curve
    assert scalars(out / "tensorboard", "lr/head")  # LR of every group
    assert metrics["wall_time_s"] < 60
    # notices a user reads as bugs, caused on purpose (frozen modules in eval mode), are not printed
    assert "in eval mode at the start of training" not in proc.stderr + proc.stdout
    ev = subprocess.run([sys.executable, "-m", "cifar_ft.eval", f"ckpt_path={out}/checkpoints/last.ckpt",
                         "data=synthetic", f"hydra.run.dir={tmp_path / 'ev'}"], cwd=ROOT, capture_output=True,
                        text=True, timeout=300)
    assert ev.returncode == 0, ev.stderr[-3000:]
    assert "test/acc" in ev.stdout and (tmp_path / "ev" / "metrics.json").is_file()


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_bad_value_gives_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "experiment=smoke", "model.backbone=resnet181",
                           f"hydra.run.dir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "model.backbone='resnet181'" in lines[0] and "resnet18" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml")))
def test_every_experiment_composes(experiment, tmp_path):
    cfg = make_cfg([f"experiment={experiment}", "data.root=/nonexistent"] if experiment == "cpu_transfer"
                   else [f"experiment={experiment}"], tmp_path)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert resolved["data"]["input_size"] == resolved["model"]["input_size"]
    assert resolved["data"]["mean"] == resolved["model"]["mean"]
    for node in ("data", "model", "optimizer", "scheduler", "trainer"):
        assert "_target_" in resolved[node]
    instantiate(cfg.optimizer)
    instantiate(cfg.scheduler)


def test_every_model_and_data_option_composes(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        for group in ("model", "data", "optimizer", "scheduler", "trainer", "callbacks"):
            for option in sorted(p.stem for p in (ROOT / "conf" / group).glob("*.yaml")):
                if option == "base":
                    continue
                cfg = compose(config_name="train", overrides=[f"{group}={option}"])
                with open_dict(cfg):
                    cfg.paths.output_dir = str(tmp_path)
                if option not in ("image_folder", "gpu_per_job"):  # need data.root / a Hydra job
                    OmegaConf.to_container(cfg[group], resolve=True)


def test_run_directory_artifacts(cfg_factory):
    cfg = cfg_factory("trainer.max_epochs=2")
    train(cfg)
    out = Path(cfg.paths.output_dir)
    rows = (out / "per_class.csv").read_text().splitlines()
    assert rows[0] == "class,precision,recall,f1,support" and len(rows) == 11
    assert sum(int(r.split(",")[-1]) for r in rows[1:]) == 160  # every test image counted once
    from PIL import Image

    for name in ("curves.png", "confusion_matrix.png", "reliability.png"):
        with Image.open(out / name) as im:
            assert im.size[0] > 400 and im.size[1] > 300
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test/ece"] <= metrics["test/mce"] <= 1 and metrics["test/nll"] > 0
    assert 0 <= metrics["test/brier"] <= 2


def test_tensorboard_curves_hold_no_placeholder_point_and_hparams_hold_the_results(smoke_run):
    """No NaN point at step 0 on any curve (a placeholder for the HPARAMS tab used to be logged there); the
    tab's metrics are the run's own results, under hp/<name>."""
    import json
    import math

    from cifar_ft.reports.figures import read_scalars

    scalars = read_scalars(smoke_run / "tensorboard")
    curves = {tag: points for tag, points in scalars.items() if not tag.startswith("hp/")}
    assert curves and all(not math.isnan(v) for points in curves.values() for _, v in points)
    metrics = json.loads((smoke_run / "metrics.json").read_text())
    assert scalars["hp/val/acc"][-1][1] == pytest.approx(metrics["val/acc_best"])
    assert scalars["hp/test/acc"][-1][1] == pytest.approx(metrics["test/acc"])
