"""Safe to share: a file whose pickle runs code is refused by every command that loads files (exit 2,
one line, the code never runs); every checkpoint we write loads with weights_only=True."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.backbones.test_safe_loading import malicious
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evil")
    malicious(folder / "evil.ckpt", folder / "MARKER")
    malicious(folder / "evil.pth", folder / "MARKER")
    return folder


@pytest.mark.parametrize("command", [
    ["cifar_ft.eval", "ckpt_path={d}/evil.ckpt", "data=synthetic"],
    ["cifar_ft.predict", "ckpt_path={d}/evil.ckpt", "inputs=[{d}]"],
    ["cifar_ft.train", "experiment=smoke", "ckpt_path={d}/evil.ckpt"],
    ["cifar_ft.train", "experiment=smoke", "model.pretrained={d}/evil.pth"],
    ["cifar_ft.train", "experiment=smoke", "model.pretrained={d}/evil.ckpt"],
    ["cifar_ft.export", "ckpt_path={d}/evil.ckpt"],
], ids=["eval", "predict", "resume", "pretrained-pth", "pretrained-ckpt", "export"])
def test_malicious_files_are_refused_and_run_nothing(evil, command, tmp_path):
    args = [a.format(d=evil) for a in command]
    proc = subprocess.run([sys.executable, "-m", *args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and "is refused: loading it would run code it carries (posix.system)" in lines[0]
    assert not (evil / "MARKER").exists()
    assert not (tmp_path / "run").exists()  # refused before Hydra made a run directory


def test_our_checkpoints_load_without_trust(smoke_run):
    ckpts = sorted((smoke_run / "checkpoints").glob("*.ckpt"))
    assert {p.name for p in ckpts} >= {"last.ckpt"} and len(ckpts) == 2
    for path in ckpts:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert {"state_dict", "optimizer_states", "rng_state", "hyper_parameters", "preprocessing"} <= set(ckpt)
