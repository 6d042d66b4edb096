"""robustness=corruptions on eval and train runs: robustness.csv / .png and metrics.json entries, the
same numbers twice, subsets, and bad values refused before anything runs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from cifar_ft.errors import ConfigError
from cifar_ft.eval import evaluate
from cifar_ft.reports.robustness import RobustnessConfig, summary
from cifar_ft.train import train
from tests.conftest import FAST, make_cfg

SUBSET = ["robustness=corruptions", "robustness.corruptions=[contrast,gaussian_noise,glass_blur]",
          "robustness.severities=[1,5]", "robustness.batch_size=64"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("robust")
    train(make_cfg([*FAST, "trainer.max_epochs=1", "strategy.frozen_epochs=0", *SUBSET], out))
    return out


def read_rows(folder: Path) -> list[dict]:
    return list(csv.DictReader((folder / "robustness.csv").open()))


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_training_run_evaluates_its_test_split_under_corruption(run):
    metrics = json.loads((run / "metrics.json").read_text())
    rows = read_rows(run)
    assert [(r["corruption"], int(r["severity"])) for r in rows] == [
        (c, s) for c in ("contrast", "gaussian_noise", "glass_blur") for s in (1, 5)]
    accs = [float(r["acc"]) for r in rows]
    assert metrics["robustness/mean_acc"] == pytest.approx(sum(accs) / 6, abs=1e-5)
    assert metrics["robustness/drop"] == pytest.approx(metrics["robustness/clean_acc"] - metrics["robustness/mean_acc"])
    assert metrics["robustness/clean_acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)  # tta none both
    assert metrics["robustness/contrast"] == pytest.approx((accs[0] + accs[1]) / 2, abs=1e-5)
    with Image.open(run / "robustness.png") as img:
        assert img.format == "PNG" and img.size[0] >= 500 and img.size[1] >= 250


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_eval_gives_the_same_numbers_as_the_run_and_takes_subsets(run, tmp_path):
    ckpt = json.loads((run / "metrics.json").read_text())["best_ckpt"]
    again = evaluate(make_cfg([f"ckpt_path={ckpt}", *SUBSET], tmp_path / "a", "eval"))
    assert read_rows(tmp_path / "a") == read_rows(run)  # deterministic: same seed, same numbers
    assert again["robustness/mean_acc"] == pytest.approx(json.loads((run / "metrics.json").read_text())[
        "robustness/mean_acc"], abs=1e-9)
    other = evaluate(make_cfg([f"ckpt_path={ckpt}", *SUBSET, "robustness.seed=1",
                               "robustness.corruptions=[gaussian_noise]", "robustness.severities=[5]"],
                              tmp_path / "b", "eval"))
    assert len(read_rows(tmp_path / "b")) == 1 and "robustness/contrast" not in other


def test_summary_means_over_severities_and_corruptions():
    rows = [{"corruption": "fog", "severity": 1, "acc": 0.8, "ece": 0.1, "nll": 1.0},
            {"corruption": "fog", "severity": 5, "acc": 0.4, "ece": 0.3, "nll": 2.0},
            {"corruption": "snow", "severity": 1, "acc": 0.6, "ece": 0.2, "nll": 1.5}]
    out = summary(rows, 0.9)
    assert out["robustness/mean_acc"] == pytest.approx(0.6) and out["robustness/drop"] == pytest.approx(0.3)
    assert out["robustness/fog"] == pytest.approx(0.6) and out["robustness/snow"] == pytest.approx(0.6)
    assert out["robustness/mean_ece"] == pytest.approx(0.2)


@pytest.mark.parametrize("kwargs,named", [({"corruptions": ["fogg"]}, "robustness.corruptions='fogg'"),
                                          ({"severities": [6]}, "robustness.severities: 6"),
                                          ({"corruptions": []}, "at least one"),
                                          ({"batch_size": 0}, "robustness.batch_size=0")])
def test_bad_values_are_one_line(kwargs, named):
    with pytest.raises(ConfigError, match=named.replace("[", r"\[")):
        RobustnessConfig(**kwargs).check()


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_the_corruption_pass_leaves_the_global_random_stream_alone(run):
    from cifar_ft.data.corruptions import CORRUPTIONS, TorchDraws

    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    CORRUPTIONS["gaussian_noise"](torch.zeros(1, 3, 8, 8, dtype=torch.uint8), 3, TorchDraws(torch.Generator()))
    assert torch.equal(torch.rand(3), before)


@pytest.mark.slow  # a subprocess eval: ~20 s
def test_sigterm_during_the_corruption_pass_stops_it_and_writes_nothing(run, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import ROOT

    ckpt = json.loads((run / "metrics.json").read_text())["best_ckpt"]
    out = tmp_path / "e"
    log = tmp_path / "log"
    proc = subprocess.Popen([sys.executable, "-m", "cifar_ft.eval", f"ckpt_path={ckpt}", "robustness=corruptions",
                             "robustness.batch_size=16", f"hydra.run.dir={out}", "trainer.enable_progress_bar=false"],
                            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    t0 = time.time()
    while "Corruption robustness: 160 test images" not in log.read_text():
        assert proc.poll() is None and time.time() - t0 < 300, log.read_text()[-2000:]
        time.sleep(0.2)
    time.sleep(1.0)  # inside the pass (75 conditions of 10 batches take far longer)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143, log.read_text()[-2000:]
    assert "stopped by SIGTERM during the corruption evaluation: nothing to save" in log.read_text()
    assert not (out / "metrics.json").exists() and not (out / "robustness.csv").exists()
