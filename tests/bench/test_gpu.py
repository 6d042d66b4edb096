"""`bench gpu`: its dry run measures every row on the CPU, so the GPU proof cannot rot unseen."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from cifar_ft.bench.gpu import ROWS
from tests.conftest import ROOT


def bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_ft.bench", "gpu", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_the_dry_run_measures_every_row_and_writes_the_readme_table(tmp_path):
    proc = bench("--dry-run", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())
    names = " ".join(r["row"] for r in rows)
    for expected in ("data path @224: ours", "plain loop", "compile=True", "lite0_cifar10_gpu", "lite2_cifar10_gpu",
                     "lite0_cifar10_gpu: on dry_test", "strategy lora", "strategy vpt"):
        assert expected in names, names
    assert all(math.isfinite(r["value"]) and r["value"] > 0 for r in rows), rows
    assert {r["device"] for r in rows} == {"CPU dry run"} and all(r["dry_run"] for r in rows)
    table = (tmp_path / "gpu.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "commit" in table.splitlines()[0]


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_bad_rows_and_a_missing_gpu_are_one_line(tmp_path):
    proc = bench("--rows", "data,vitt", "--dry-run", "--out", str(tmp_path))
    assert proc.returncode != 0 and proc.stderr.strip() == f"error: --rows vitt is not valid; valid: {', '.join(ROWS)}"
    import torch

    if not torch.cuda.is_available():
        proc = bench("--out", str(tmp_path))
        assert proc.returncode != 0 and proc.stderr.strip().startswith("error: no GPU here")
    assert not any(tmp_path.iterdir())  # nothing written before the checks
