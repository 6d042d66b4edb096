"""Strategies under DDP and crashes: two gloo ranks end identical with no collective for frozen
parameters; a LoRA run killed by SIGKILL mid-epoch resumes bit-exact from its small checkpoint."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import FAST, ROOT
from tests.e2e.test_ddp import max_diff, run_ddp
from tests.e2e.test_resilience import signal_at


@pytest.mark.slow  # 2 gloo ranks per strategy: ~40 s each
@pytest.mark.parametrize("strategy", ["lora", "bitfit"])
def test_two_ranks_end_identical_and_sync_only_what_trains(tmp_path, strategy):
    out = tmp_path / strategy
    ranks = run_ddp(out, f"strategy={strategy}", "+callbacks.collectives._target_=tests.helpers.CollectiveLog",
                    f"+callbacks.collectives.path={out}")
    assert max_diff(ranks[0], ranks[1]) == 0.0
    for rank in (0, 1):
        log = json.loads((out / f"collectives{rank}.json").read_text())
        trainable = log["trainable"]
        marker = ".lora_" if strategy == "lora" else ".bias"
        assert trainable and all(marker in n for n in trainable)
        # gradients exist only for what trains: a frozen base weight never reaches any collective
        assert set(log["with_grad"]) == set(trainable)
        # the Python-level sync (parameters unfrozen after DDP wrapped the model) is exactly their numel
        assert max(log["calls"]) == sum(trainable.values())


def _weights(path: Path) -> str:
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=0)
    for m in net.modules():  # no zero-initialised BatchNorm scales: every adapter gets gradients
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.normal_(m.weight, 1.0, 0.1)
    save_file(net.state_dict(), str(path))
    return str(path)


@pytest.mark.slow  # three runs: ~40 s
def test_lora_sigkill_mid_epoch_resumes_bit_exact_from_small_checkpoints(tmp_path):
    weights = _weights(tmp_path / "base.safetensors")
    run = [*FAST, "strategy=lora", f"model.pretrained={weights}", "strategy.dropout=0.1", "trainer.max_epochs=2",
           "trainer.deterministic=true", "data.train_size=384", "callbacks.checkpoints.every_n_train_steps=4"]

    def cli(run_dir: Path, *extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cifar_ft.train", *run, f"hydra.run.dir={run_dir}", *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)

    reference = tmp_path / "reference"
    assert cli(reference).returncode == 0
    killed = tmp_path / "killed"
    proc = cli(killed, *signal_at(12 + 6, "SIGKILL"))  # epoch 1 of 12 steps each, mid-epoch
    assert proc.returncode == -signal.SIGKILL
    last = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 16 and "base_weights" in last  # a small, mid-epoch checkpoint
    proc = cli(killed, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    want = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=True)
    got = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=True)
    assert want["state_dict"].keys() == got["state_dict"].keys()
    for key in want["state_dict"]:
        assert torch.equal(want["state_dict"][key], got["state_dict"][key]), key
    m_ref, m_res = (json.loads((d / "metrics.json").read_text()) for d in (reference, killed))
    assert m_res["test/acc"] == m_ref["test/acc"] and m_res["global_step"] == m_ref["global_step"]
