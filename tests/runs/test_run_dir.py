"""Run directories: no command overwrites a run's results, two commands never share one, a command
that fails at once leaves none behind, and a finished run's checkpoint is not "trained" again."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.runs.run_dir import LOCK_NAME, discard_if_empty, guard
from tests.conftest import FAST, ROOT


def finished_run(tmp_path: Path) -> Path:
    run = tmp_path / "finished"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text("the finished run's config\n")
    (run / "metrics.json").write_text('{"test/acc": 0.9}\n')
    return run


def test_train_or_eval_into_a_directory_with_results_is_refused_unless_train_continues_it(tmp_path):
    run = finished_run(tmp_path)
    with pytest.raises(ConfigError, match=r"holds a run already \(metrics.json\); continue it with ckpt_path=last"):
        guard("train", ["experiment=smoke", f"hydra.run.dir={run}"])
    with pytest.raises(ConfigError, match="holds a run's results .* which eval would overwrite"):
        guard("eval", ["ckpt_path=x.ckpt", f"hydra.run.dir={run}"])
    with pytest.raises(ConfigError, match="ckpt_path=last: no checkpoint at .*last.ckpt"):
        guard("train", [f"hydra.run.dir={run}", "ckpt_path=last"])
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    guard("train", [f"hydra.run.dir={run}", "ckpt_path=last"])  # continuing the run is what the directory is for
    assert (run / LOCK_NAME).exists()


def test_ckpt_path_last_without_a_run_directory_and_an_empty_run_directory_are_refused():
    with pytest.raises(ConfigError, match="no hydra.run.dir=DIR was given"):
        guard("train", ["experiment=smoke", "ckpt_path=last"])
    with pytest.raises(ConfigError, match="hydra.run.dir= is empty"):
        guard("train", ["hydra.run.dir="])
    with pytest.raises(ConfigError, match="hydra.run.dir= is empty"):
        guard("export", ["hydra.run.dir= "])


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_second_command_into_a_directory_in_use_is_refused(tmp_path):
    run = tmp_path / "busy"
    run.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                               str(run / LOCK_NAME)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is in use by another running command"):
            guard("train", [f"hydra.run.dir={run}"])
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    guard("train", [f"hydra.run.dir={run}"])  # free again once the other command has ended


def test_only_a_directory_this_command_made_and_left_empty_is_removed(tmp_path):
    made = tmp_path / "made"
    (made / ".hydra").mkdir(parents=True)
    (made / "train.log").write_text("error: ...\n")
    discard_if_empty(made, created=True)
    assert not made.exists()
    kept = tmp_path / "kept"
    (kept / ".hydra").mkdir(parents=True)
    discard_if_empty(kept, created=False)  # the user's own directory: never removed
    assert kept.exists()
    busy = tmp_path / "busy"
    (busy / "checkpoints").mkdir(parents=True)
    discard_if_empty(busy, created=True)  # holds more than Hydra's files
    assert busy.exists()


@pytest.mark.slow  # subprocess start-up (~10 s per command here) dominates: the slow tier
def test_the_commands_refuse_before_hydra_writes_and_a_failed_run_leaves_no_directory(tmp_path):
    run = finished_run(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *FAST, f"hydra.run.dir={run}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "holds a run already" in proc.stderr.strip().splitlines()[-1]
    assert (run / ".hydra" / "config.yaml").read_text() == "the finished run's config\n"  # Hydra never ran
    new = tmp_path / "new"
    proc = subprocess.run([sys.executable, "-m", "cifar_ft.train", *FAST, "data=image_folder",
                           f"data.root={tmp_path / 'no_such_folder'}", f"hydra.run.dir={new}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert not new.exists()


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_finished_runs_checkpoint_in_a_new_directory_is_refused_but_can_train_on(cfg_factory):
    from cifar_ft.train import train

    first = cfg_factory("trainer.max_epochs=1", name="first")
    train(first)
    last = f"{first.paths.output_dir}/checkpoints/last.ckpt"
    with pytest.raises(ConfigError, match=r"is the checkpoint of a finished run \(epoch 0.*trainer.max_epochs=1"):
        train(cfg_factory("trainer.max_epochs=1", f"ckpt_path={last}", name="again"))
    assert train(cfg_factory("trainer.max_epochs=2", f"ckpt_path={last}", name="longer")) is not None


@pytest.mark.parametrize("variable", ["LOCAL_RANK", "RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID"])
def test_other_ranks_and_nodes_join_the_directory_the_first_process_holds(tmp_path, monkeypatch, variable):
    """DDP ranks > 0 and the processes of other nodes (torchrun, SLURM) run the same command line into
    the same directory: they neither check nor lock it (the first process did both)."""
    run = finished_run(tmp_path)
    monkeypatch.setenv(variable, "1")
    guard("train", [f"hydra.run.dir={run}"])  # would be refused on the first process
    assert not (run / LOCK_NAME).exists()
