"""Temperature scaling (calibrate=temperature): the fit, what it changes and what it must not, and the
temperature's way from the training run through the checkpoint to eval, predict and every export."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cifar_ft.callbacks.temperature import fit_temperature, nll
from cifar_ft.data.synthetic import SyntheticDataModule
from cifar_ft.eval import evaluate
from cifar_ft.export import export
from cifar_ft.models.calibration import apply_temperature
from cifar_ft.runs.checkpoints import load_classifier
from cifar_ft.train import train
from tests.conftest import FAST, make_cfg


def calibrated_draws(n: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a perfectly calibrated model, and labels drawn from its own probabilities."""
    gen = torch.Generator().manual_seed(seed)
    logits = 3.0 * torch.randn(n, classes, generator=gen, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(1)
    return logits, labels


@pytest.mark.parametrize("true_t", [2.5, 0.6, 1.0])
def test_the_fit_recovers_a_known_temperature(true_t):
    logits, labels = calibrated_draws(20_000, 10, seed=1)
    scaled = (logits * true_t).log_softmax(-1)  # over- (T > 1) or under-confident (T < 1) by true_t
    fitted = fit_temperature(scaled, labels)
    assert abs(fitted - true_t) / true_t < 0.05, fitted
    assert nll(scaled, labels, fitted) <= nll(scaled, labels, 1.0) + 1e-12
    assert fit_temperature(scaled, labels) == fitted  # deterministic


def test_a_temperature_never_changes_the_argmax():
    logits, _ = calibrated_draws(2_000, 100, seed=2)
    log_probs = logits.log_softmax(-1)
    for t in (0.3, 1.7, 9.0):
        assert torch.equal(apply_temperature(log_probs, t).argmax(-1), logits.argmax(-1))
        assert torch.allclose(apply_temperature(log_probs, t), (logits / t).softmax(-1), atol=1e-12)


@pytest.fixture(scope="module")
def calibrated_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("calibrated")
    train(make_cfg([*FAST, "trainer.max_epochs=2", "strategy.frozen_epochs=0", "calibrate=temperature"], run))
    return run


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_calibrated_run_fits_on_validation_and_tests_with_it(calibrated_run):
    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    t = metrics["temperature"]
    assert metrics["calibrate"] == "temperature" and t > 0 and t != 1.0 and metrics["val_images"] == 80
    assert metrics["val/nll_after_temperature"] < metrics["val/nll_before_temperature"]
    ckpt = torch.load(metrics["best_ckpt"], weights_only=True)
    assert float(ckpt["state_dict"]["temperature"]) == pytest.approx(t, rel=1e-12)
    assert ckpt["calibration"]["temperature"] == t and ckpt["calibration"]["method"] == "temperature"
    assert {"test/ece_uncalibrated", "test/nll_uncalibrated", "test/ece", "test/nll"} <= set(metrics)
    # the test's predictions are those of the uncalibrated model (argmax unchanged), its confidences T's
    model = load_classifier(metrics["best_ckpt"]).eval()
    dm = SyntheticDataModule(input_size=32, mean=[0.5] * 3, std=[0.5] * 3, batch_size=32, train_size=480,
                             val_size=80, test_size=160)
    dm.setup("test")
    with torch.no_grad():
        logits = model(dm.batch_transform(False)(dm.splits["test"].images))
    accuracy = (logits.argmax(-1) == dm.splits["test"].labels).float().mean().item()
    assert metrics["test/acc"] == pytest.approx(accuracy, abs=1e-6)
    direct = torch.nn.functional.cross_entropy(logits.double() / t, dm.splits["test"].labels).item()
    assert metrics["test/nll"] == pytest.approx(direct, abs=1e-4)
    raw = torch.nn.functional.cross_entropy(logits.double(), dm.splits["test"].labels).item()
    assert metrics["test/nll_uncalibrated"] == pytest.approx(raw, abs=1e-4)


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_eval_applies_the_stored_temperature_and_calibrate_none_switches_it_off(calibrated_run, tmp_path):
    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    ckpt = metrics["best_ckpt"]
    stored = evaluate(make_cfg([f"ckpt_path={ckpt}"], tmp_path / "a", "eval"))
    assert stored["temperature"] == pytest.approx(metrics["temperature"])
    for key in ("test/nll", "test/ece", "test/nll_uncalibrated", "test/acc"):
        assert stored[key] == pytest.approx(metrics[key], abs=1e-5), key
    off = evaluate(make_cfg([f"ckpt_path={ckpt}", "calibrate=none"], tmp_path / "b", "eval"))
    assert off["temperature"] == 1.0 and "test/nll_uncalibrated" not in off
    assert off["test/nll"] == pytest.approx(metrics["test/nll_uncalibrated"], abs=1e-5)
    assert off["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)


@pytest.mark.slow  # three exports (two ONNX): ~20 s
def test_predict_and_exports_give_the_calibrated_probabilities(calibrated_run, tmp_path):
    import timm

    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    ckpt, t = metrics["best_ckpt"], metrics["temperature"]
    model = load_classifier(ckpt).eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        want = (model(x).double() / t).softmax(-1).float()
        assert torch.allclose(model.predict_probs(x), want, atol=1e-6)
    export(make_cfg([f"ckpt_path={ckpt}", "format=timm", f"out={tmp_path / 'timm'}"], tmp_path, "export"))
    net = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True).eval()
    with torch.no_grad():
        assert (net(x).softmax(-1) - want).abs().max() <= 1e-4
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["cifar_ft_temperature_folded"] == pytest.approx(t)
    assert f"T = {t:.4f}" in (tmp_path / "timm" / "README.md").read_text()
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    export(make_cfg([f"ckpt_path={ckpt}", "format=onnx", f"out={tmp_path / 'onnx'}"], tmp_path, "export"))
    session = ort.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    assert (logits.softmax(-1) - want).abs().max() <= 1e-4
    export(make_cfg([f"ckpt_path={ckpt}", "format=onnx", "calibrate=none", f"out={tmp_path / 'raw'}"], tmp_path,
                    "export"))
    session = ort.InferenceSession(str(tmp_path / "raw" / "model.onnx"), providers=["CPUExecutionProvider"])
    raw = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
    with torch.no_grad():
        assert (raw - model(x)).abs().max() <= 1e-4  # the plain logits: no temperature folded in


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_predict_prints_the_calibrated_probabilities_and_none_the_plain_ones(calibrated_run, tmp_path):
    from PIL import Image

    from cifar_ft.data.synthetic import synthetic_images
    from cifar_ft.data.transforms import BatchTransform
    from cifar_ft.predict import predict

    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    ckpt, t = metrics["best_ckpt"], metrics["temperature"]
    data = synthetic_images(4, 10, 32, seed=0, split_offset=1)
    paths = []
    for i, img in enumerate(data.images):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(paths[-1])
    model = load_classifier(ckpt).eval()
    with torch.no_grad():
        logits = model(BatchTransform(32, [0.5] * 3, [0.5] * 3, train=False, preset="none")(data.images))
    for calibrate, temperature in (("null", t), ("none", 1.0)):
        rows = predict(make_cfg([f"ckpt_path={ckpt}", f"inputs=[{','.join(paths)}]", "top_k=10",
                                 f"calibrate={calibrate}"], tmp_path / calibrate, "predict"))
        got = torch.tensor([[{e["class"]: e["probability"] for e in r["top_k"]}[f"class_{c}"] for c in range(10)]
                            for r in rows])
        assert (got - (logits.double() / temperature).softmax(-1)).abs().max() <= 1e-5, calibrate


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_checkpoint_from_before_temperature_scaling_loads_uncalibrated(calibrated_run, tmp_path):
    metrics = json.loads((calibrated_run / "metrics.json").read_text())
    ckpt = torch.load(metrics["best_ckpt"], weights_only=True)
    del ckpt["state_dict"]["temperature"]
    ckpt.pop("calibration")
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    assert float(load_classifier(str(old)).temperature) == 1.0
