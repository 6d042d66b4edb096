"""Results people look at: predict on image files, and the explore notebook executed on real run dirs."""
from __future__ import annotations

import base64
import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from cifar_ft.errors import ConfigError
from cifar_ft.predict import predict
from cifar_ft.sweeps import explore
from tests.conftest import FAST, ROOT, make_cfg


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """A two-job smoke sweep made by the real command line (run dirs with .hydra/, summary.md)."""
    sweep_dir = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", "-m", *FAST, "optimizer.lr=3e-3,1e-2",
                           f"hydra.sweep.dir={sweep_dir}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sweep_dir


def execute_notebook(run_dir: Path, monkeypatch) -> list[dict]:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("CIFAR_FT_RUN_DIR", str(run_dir))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this checkout's cifar_ft
    nb = nbformat.read(ROOT / "notebooks" / "explore_run.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    return [o for cell in nb.cells for o in cell.get("outputs", [])]


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_notebook_runs_top_to_bottom_on_a_sweep_and_on_a_run(sweep, monkeypatch, tmp_path):
    outputs = execute_notebook(sweep, monkeypatch)
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "Best job:" in text and "| job | status |" in text  # the sweep's summary table
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 4  # curves, confusion matrix, mistakes.png (Grad-CAM), reliability diagram
    for i, data in enumerate(pngs):
        (tmp_path / f"{i}.png").write_bytes(data)
        with Image.open(tmp_path / f"{i}.png") as im:
            assert im.width > 600 and im.height > 300
    assert "| class_0 |" in text  # per-class report
    assert "| test/ece |" in text and "run with robustness=corruptions" in text  # calibration; how to get robustness
    outputs = execute_notebook(sweep / "1", monkeypatch)  # a single run directory
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 4


def test_mistakes_are_the_most_confident_wrong_predictions(sweep):
    run = sweep / "0"
    rows = explore.predictions(run)
    names = explore.class_names(run)
    assert len(rows) == 160 and [r["index"] for r in rows] == list(range(160))
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    assert accuracy == pytest.approx(json.loads((run / "metrics.json").read_text())["test/acc"], abs=1e-6)
    assert int(explore.confusion_from_predictions(rows, names).sum()) == 160
    worst = explore.confident_mistakes(rows, 5)
    assert all(not r["correct"] for r in worst)
    assert [r["confidence"] for r in worst] == sorted((r["confidence"] for r in rows if not r["correct"]),
                                                      reverse=True)[:5]


def write_test_pngs(run: Path, indices: list[int], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    paths = []
    for i, img in zip(indices, explore.test_images(run, indices)):
        paths.append(folder / f"test_{i:03d}.png")
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])  # lossless: the same pixels
    return paths


def test_predict_matches_the_runs_own_test_predictions(sweep, tmp_path):
    run = sweep / "0"
    paths = write_test_pngs(run, list(range(20)), tmp_path / "images")
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image")
    best = json.loads((run / "metrics.json").read_text())["best_ckpt"]  # what made test_predictions.csv
    cfg = make_cfg([f"ckpt_path={best}", f"inputs=[{paths[0]},{tmp_path / 'images'}]",
                    "top_k=3"], tmp_path / "out", "predict")
    rows = predict(cfg)
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # each image once; the broken one skipped
    expected = {r["index"]: r for r in explore.predictions(run)}
    for i, r in enumerate(rows):
        assert len(r["top_k"]) == 3 and r["top_k"][0]["class"] == expected[i]["prediction"]
        assert r["top_k"][0]["probability"] == pytest.approx(expected[i]["confidence"], abs=1e-4)
        probs = [t["probability"] for t in r["top_k"]]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-5
    saved = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert saved["predictions"] == rows and saved["skipped"] == [str(tmp_path / "images" / "broken.jpg")]
    with (tmp_path / "out" / "predictions.csv").open() as f:
        table = list(csv.DictReader(f))
    assert len(table) == 20 and table[0]["class1"] == rows[0]["top_k"][0]["class"] and "prob3" in table[0]


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_predict_command_prints_a_table_and_rejects_missing_inputs(sweep, tmp_path):
    run = sweep / "0"
    paths = write_test_pngs(run, [0, 1], tmp_path / "images")
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.predict", f"ckpt_path={run}/checkpoints/last.ckpt",
                           f"inputs={paths[0]}", f"hydra.run.dir={tmp_path / 'out'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "top-5 predictions" in proc.stdout and "test_000.png" in proc.stdout
    assert (tmp_path / "out" / "predictions.csv").is_file()
    cfg = make_cfg([f"ckpt_path={run}/checkpoints/last.ckpt", f"inputs=[{tmp_path / 'nowhere.jpg'}]"],
                   tmp_path / "out2", "predict")
    with pytest.raises(ConfigError, match="nowhere.jpg' is neither an image file nor a directory"):
        predict(cfg)


def test_the_notebook_defaults_to_the_newest_training_run_and_copes_with_missing_series(sweep, tmp_path):
    """An eval directory written after the run is not a training run; a run too short to log, or
    with no test predictions, gives None figures (the notebook prints why) instead of a crash."""
    import os
    import shutil
    import time

    outputs = tmp_path / "outputs"
    shutil.copytree(sweep / "0", outputs / "train" / "run")
    (outputs / "eval" / "later").mkdir(parents=True)
    (outputs / "eval" / "later" / "metrics.json").write_text('{"test/acc": 0.5}\n')
    later = time.time() + 10
    os.utime(outputs / "eval" / "later" / "metrics.json", (later, later))
    assert explore.newest_training_run(outputs) == outputs / "train" / "run"
    short = outputs / "train" / "short"
    (short / "checkpoints").mkdir(parents=True)
    (short / "tensorboard").mkdir()
    (short / "metrics.json").write_text('{"test/acc": 0.1}\n')
    assert explore.curves(short) is None and explore.confusion(short) is None
    with pytest.raises(ConfigError, match="no training run under"):
        explore.newest_training_run(tmp_path / "nothing")
