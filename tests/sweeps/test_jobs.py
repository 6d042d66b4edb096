"""A sweep's job plans (the `contracts.JobPlan` a run gets): a finished job is skipped with its result, an
interrupted one resumes, a new one runs; the run reads nothing else of sweeps/."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from cifar_ft.contracts import JobPlan
from cifar_ft.sweeps.jobs import fingerprint, plan_job
from tests.conftest import make_cfg

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_job_runs_a_finished_one_is_skipped_with_its_result_an_interrupted_one_resumes(tmp_path):
    cfg = make_cfg(["experiment=smoke"], tmp_path / "3")
    tmp_path = tmp_path / "3"  # job 3 of the sweep in tmp_path (trackers make one parent run per sweep)
    assert plan_job(cfg) == JobPlan(sweep_dir=str(tmp_path.parent), job=3)  # new: records this attempt (job.json)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")
    assert plan_job(cfg).resume and not plan_job(cfg).skip
    (tmp_path / "metrics.json").write_text(json.dumps({"val/acc_best": 0.75}))
    plan = plan_job(cfg)
    assert plan.skip and plan.result == 0.75
    assert json.loads((tmp_path / "job.json").read_text())["config"] == fingerprint(cfg)


def test_train_reads_nothing_of_sweeps_but_the_plan():
    tree = ast.parse((ROOT / "cifar_ft" / "train.py").read_text())
    imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for alias in node.names if node.module and node.module.startswith("cifar_ft.sweeps")}
    assert imported == {("cifar_ft.sweeps.jobs", "plan_job")}
