"""Crashes and resumes lose nothing: atomic checkpoints, SIGKILL/SIGTERM/SIGINT, exact mid-epoch resume."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cifar_ft.reports.figures import read_scalars
from tests.conftest import FAST, ROOT
from tests.helpers import state

# 400 training images / 32 = 12 steps per epoch; epoch 0 frozen (cached features), epoch 1 unfrozen.
# Head dropout makes the run draw from the global RNG, which the resume must restore too.
RUN = [*FAST, "trainer.max_epochs=2", "trainer.deterministic=true", "model.head_dropout=0.3"]
STEPS_PER_EPOCH = 12


def cli(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_ft.train", *RUN, f"hydra.run.dir={run_dir}", *overrides],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)


def signal_at(step: int, name: str) -> list[str]:
    return ["+callbacks.signal._target_=tests.helpers.SignalAt", f"+callbacks.signal.step={step}",
            f"+callbacks.signal.signal={name}"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted run every interrupted one must reproduce bit for bit."""
    run_dir = tmp_path_factory.mktemp("reference")
    proc = cli(run_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def assert_same_run(reference: Path, resumed: Path) -> None:
    want, got = state(reference / "checkpoints" / "last.ckpt"), state(resumed / "checkpoints" / "last.ckpt")
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), f"{key} differs from the uninterrupted run"
    m_ref = json.loads((reference / "metrics.json").read_text())
    m_res = json.loads((resumed / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "test/f1_macro", "val/acc_best", "global_step", "epochs"):
        assert m_res[key] == m_ref[key], key
    # every epoch's validation appears exactly once, at the same step as in the uninterrupted run
    ref_val, res_val = read_scalars(reference / "tensorboard"), read_scalars(resumed / "tensorboard")
    epochs_logged = [[s for s, v in run["val/acc"] if v == v] for run in (ref_val, res_val)]  # v == v: not NaN
    assert epochs_logged[0] == epochs_logged[1] and len(epochs_logged[1]) == 2
    assert [s for s, _ in res_val["train/loss"]] == [s for s, _ in ref_val["train/loss"]]


@pytest.mark.slow  # kill + resume: ~20 s
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(reference, tmp_path):
    run_dir = tmp_path / "killed"
    proc = cli(run_dir, *signal_at(STEPS_PER_EPOCH + 6, "SIGKILL"))  # mid-epoch 1, after unfreezing
    assert proc.returncode == -signal.SIGKILL
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == STEPS_PER_EPOCH
    assert not list((run_dir / "checkpoints").glob(".*tmp*"))  # nothing half-written left behind
    proc = cli(run_dir, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, run_dir)


@pytest.mark.slow  # stop + resume: ~15 s
def test_sigterm_mid_epoch_saves_and_resumes_exactly_inside_the_freeze_phase(reference, tmp_path):
    run_dir = tmp_path / "preempted"
    proc = cli(run_dir, *signal_at(7, "SIGTERM"))  # epoch 0: frozen backbone, cached features
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("stopped by SIGTERM at step 7: saved ") and "ckpt_path=last" in last_line
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 7 and ckpt["epoch"] == 0
    proc = cli(run_dir, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, run_dir)


def signal_in(phase: str, **where: int) -> list[str]:
    return ["+callbacks.signal._target_=tests.helpers.SignalInPhase", f"+callbacks.signal.phase={phase}",
            *(f"+callbacks.signal.{k}={v}" for k, v in where.items())]


@pytest.mark.slow  # stop + resume: ~15 s
def test_sigterm_during_validation_stops_within_a_batch_and_the_resume_validates_again_exactly(reference, tmp_path):
    """Epoch 0's validation (after 12 steps) is cut after its first batch; the resume must run that
    validation whole (its partial metric state is not in the checkpoint) and then end as the reference."""
    run_dir = tmp_path / "preempted_in_val"
    proc = cli(run_dir, *signal_in("validation", batch=0, epoch=0))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert "SIGTERM during validation at epoch 0, step 12" in proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"stopped by SIGTERM at step {STEPS_PER_EPOCH}: saved ")
    assert not (run_dir / "checkpoints" / "best.ckpt").exists()  # the validation never finished
    proc = cli(run_dir, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(reference, run_dir)


def test_sigterm_during_the_final_test_stops_within_a_batch_and_keeps_the_checkpoints(tmp_path):
    run_dir = tmp_path / "stopped_in_test"
    proc = cli(run_dir, "trainer.max_epochs=1", "data.test_size=640", *signal_in("test", batch=1))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("stopped by SIGTERM during the test: nothing to save")
    assert "SIGTERM during the test at epoch" in proc.stdout + proc.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").exists() and not (run_dir / "metrics.json").exists()


def test_sigterm_during_eval_stops_within_a_batch_and_writes_nothing(tmp_path, monkeypatch):
    """In-process: our handler turns the signal into a stop after the current test batch (the default
    handler would end pytest); nothing is written and the previous handler is back afterwards."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    import cifar_ft.eval as eval_command
    from cifar_ft.eval import evaluate
    from tests.conftest import make_cfg
    from tests.helpers import SignalInPhase

    run_dir = tmp_path / "run"
    assert cli(run_dir, "trainer.max_epochs=1").returncode == 0
    build = eval_command.build_trainer
    signalling = SignalInPhase("test", batch=1)
    monkeypatch.setattr(eval_command, "build_trainer",
                        lambda cfg, callbacks, loggers, out: build(cfg, [*callbacks, signalling], loggers, out))
    before = signal.getsignal(signal.SIGTERM)
    cfg = make_cfg([f"ckpt_path={run_dir}/checkpoints/last.ckpt", "trainer.enable_progress_bar=false",
                    "model.batch_size=16"], tmp_path / "eval", "eval")
    with pytest.raises(SIGTERMException) as stopped:
        evaluate(cfg)
    assert stopped.value.phase == "the test" and not stopped.value.fitting
    assert not (tmp_path / "eval" / "metrics.json").exists()
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_sigint_finishes_the_step_and_saves_a_checkpoint(tmp_path):
    run_dir = tmp_path / "ctrl_c"
    proc = cli(run_dir, *signal_at(STEPS_PER_EPOCH + 3, "SIGINT"))
    assert proc.returncode == 128 + signal.SIGINT, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"stopped by SIGINT at step {STEPS_PER_EPOCH + 3}")
    assert "weights_only` was not set" not in proc.stdout + proc.stderr  # reads as unsafe loading: not said
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == STEPS_PER_EPOCH + 3 and ckpt["epoch"] == 1


@pytest.mark.slow  # 2 gloo ranks, 4 runs: ~80 s
@pytest.mark.parametrize("agreement", [["callbacks.stop_on_signal.agree_every_n_steps=1"],
                                       ["callbacks.stop_on_signal.max_delay_s=0.2"]], ids=["every_step", "adaptive"])
def test_ddp_sigterm_to_one_rank_stops_all_ranks_at_one_step_and_resumes_exactly(tmp_path, agreement):
    """Two gloo processes; only rank 0 is signalled (e.g. `kill` of the launching process). The ranks
    agree every step, or on the adaptive schedule (every ~max_delay_s of training)."""
    ddp = ["trainer=ddp_cpu", "trainer.devices=2"]  # 200 images per rank / 32: 6 steps per epoch
    reference = tmp_path / "reference"
    assert cli(reference, *ddp).returncode == 0
    run_dir = tmp_path / "preempted"
    proc = cli(run_dir, *ddp, *agreement, *signal_at(4, "SIGTERM"), "+callbacks.signal.rank=0")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    stopped = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert stopped == 4 if "every_n_steps=1" in agreement[0] else 4 <= stopped < 12
    proc = cli(run_dir, *ddp, "ckpt_path=last")
    assert proc.returncode == 0, proc.stderr[-3000:]
    want, got = state(reference / "checkpoints" / "last.ckpt"), state(run_dir / "checkpoints" / "last.ckpt")
    assert all(torch.equal(want[k], got[k]) for k in want)


@pytest.mark.slow  # 2 gloo ranks, 3 runs: ~60 s
def test_ddp_sigterm_to_one_rank_during_validation_or_test_stops_both_ranks(tmp_path):
    """Rank 1 alone is signalled as validation (epoch 0) or the final test starts: both ranks stop
    after that batch, with exit 143; the validation stop resumes to the uninterrupted run's weights."""
    ddp = ["trainer=ddp_cpu", "trainer.devices=2"]  # 200 images per rank / 32: 6 steps per epoch
    reference = tmp_path / "reference"
    assert cli(reference, *ddp).returncode == 0
    in_val = tmp_path / "val"
    proc = cli(in_val, *ddp, *signal_in("validation", batch=0, epoch=0, rank=1))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert torch.load(in_val / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 6
    assert cli(in_val, *ddp, "ckpt_path=last").returncode == 0
    want, got = state(reference / "checkpoints" / "last.ckpt"), state(in_val / "checkpoints" / "last.ckpt")
    assert all(torch.equal(want[k], got[k]) for k in want)
    in_test = tmp_path / "test"
    proc = cli(in_test, *ddp, "trainer.max_epochs=1", *signal_in("test", batch=0, rank=1))
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr[-3000:]
    assert "during the test: nothing to save" in proc.stderr and not (in_test / "metrics.json").exists()


def test_resume_true_continues_in_the_same_run_directory(cfg_factory):
    from cifar_ft.train import train

    train(cfg_factory("trainer.max_epochs=1", name="run"))
    out = cfg_factory(name="run").paths.output_dir
    assert torch.load(f"{out}/checkpoints/last.ckpt", weights_only=True)["global_step"] == STEPS_PER_EPOCH
    import json

    from cifar_ft.reports.figures import read_scalars

    assert "resumed_at_steps" not in json.loads(Path(out, "metrics.json").read_text())  # a whole run: no mark
    Path(out, "metrics.json").unlink()  # train on in the same directory, as after a stop
    train(cfg_factory("trainer.max_epochs=2", "ckpt_path=last", name="run"))
    assert torch.load(f"{out}/checkpoints/last.ckpt", weights_only=True)["global_step"] == 2 * STEPS_PER_EPOCH
    # where it resumed is marked: that epoch's train metrics cover only the steps after it
    assert json.loads(Path(out, "metrics.json").read_text())["resumed_at_steps"] == [STEPS_PER_EPOCH]
    assert read_scalars(Path(out, "tensorboard"))["train/resumed_at_step"] == [(STEPS_PER_EPOCH, STEPS_PER_EPOCH)]
