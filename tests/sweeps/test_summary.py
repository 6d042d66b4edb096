"""Sweep summaries read honestly: no zero-width interval for one seed, bars from 0, whole epochs."""
from __future__ import annotations

import json
from pathlib import Path

from matplotlib.ticker import MaxNLocator

from cifar_ft.reports.figures import sweep_figure
from cifar_ft.sweeps.compare import _figure
from cifar_ft.sweeps.summary import group_rows, summarize


def job(sweep: Path, n: int, overrides: list[str], acc: float) -> None:
    d = sweep / str(n)
    (d / ".hydra").mkdir(parents=True)
    (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (d / "metrics.json").write_text(json.dumps({"val/acc_best": acc, "test/acc": acc - 0.01,
                                                "test/f1_macro": acc - 0.02, "epochs": 2}))


def test_one_seed_per_group_prints_no_interval(tmp_path):
    job(tmp_path, 0, ["optimizer.lr=1e-3", "seed=0"], 0.90)
    job(tmp_path, 1, ["optimizer.lr=3e-3", "seed=0"], 0.80)
    summarize(tmp_path)
    text = (tmp_path / "summary.md").read_text()
    assert "| optimizer.lr=1e-3 | 1 | 0.9000 ± n/a [n/a]" in text
    assert "[0.9000, 0.9000]" not in text


def test_groups_of_several_seeds_keep_their_interval(tmp_path):
    for n, acc in enumerate((0.80, 0.82, 0.84)):
        job(tmp_path, n, ["optimizer.lr=1e-3", f"seed={n}"], acc)
    summarize(tmp_path)
    assert "0.8200 ± 0.0200 [" in (tmp_path / "summary.md").read_text()


def test_summary_bars_start_at_zero():
    groups = group_rows([{"job": "0", "status": "ok", "overrides": "a=1", "val/acc_best": 0.95, "test/acc": 0.94},
                         {"job": "1", "status": "ok", "overrides": "a=2", "val/acc_best": 0.96, "test/acc": 0.95}],
                        "val/acc_best")
    fig = sweep_figure(groups, {}, "val/acc_best")
    assert fig.axes[1].get_ylim()[0] == 0.0


def test_compare_figure_has_whole_epoch_ticks(tmp_path):
    fig = _figure([{"dir": tmp_path}], ["0: run"])
    locator = fig.axes[1].xaxis.get_major_locator()
    assert isinstance(locator, MaxNLocator) and locator._integer
