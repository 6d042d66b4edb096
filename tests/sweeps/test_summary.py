"""Sweep summaries read honestly: no zero-width interval for one seed, bars from 0, whole epochs."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
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


@pytest.mark.parametrize("count,seeds", [(2, 1), (12, 2)])
def test_the_sweep_figure_fits_any_number_of_groups_and_names_and_draws_intervals_only_with_seeds(count, seeds):
    """Rendered with long group names: every text (legend included) lies inside the figure, the two panel
    titles do not overlap, and with one seed per group no error bar or band is drawn."""
    from matplotlib.collections import PolyCollection

    from cifar_ft.reports.figures import sweep_figure

    name = "model=efficientnet_lite0_offline optimizer.lr=0.0003 data.augment=trivialaugment strategy=lora #"
    groups = [{"group": f"{name}{i}", "n": seeds, "test/acc": 0.5 + i / 100, "test/acc std": 0.02}
              for i in range(count)]
    curves = {g["group"]: [[0.3, 0.4 + i / 100, 0.5] for i in range(seeds)] for g in groups}
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = sweep_figure(groups, curves, "val/acc_best")
    FigureCanvasAgg(fig).draw()  # as savefig draws it
    renderer, box = fig.canvas.get_renderer(), fig.bbox
    for extent in [*(ax.get_tightbbox(renderer) for ax in fig.axes), *(leg.get_window_extent(renderer)
                                                                          for leg in fig.legends)]:
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1 and box.y0 - 1 <= extent.y0, extent
        assert extent.y1 <= box.y1 + 1, extent
    left, right = fig.axes
    assert not left.title.get_window_extent(renderer).overlaps(right.title.get_window_extent(renderer))
    bands = [c for c in left.collections if isinstance(c, PolyCollection)]
    from matplotlib.container import ErrorbarContainer

    errorbars = [c for c in right.containers if isinstance(c, ErrorbarContainer)]
    assert (len(bands) > 0) == (seeds >= 2) and (len(errorbars) > 0) == (seeds >= 2)


def test_importances_from_few_trials_carry_a_caveat(tmp_path):
    from cifar_ft.sweeps.study_view import MIN_TRIALS_FOR_IMPORTANCES, study_markdown

    view = {"study_name": "s", "directions": ["maximize"], "states": {"COMPLETE": 4}, "best": [],
            "importances": {"optimizer.lr": 0.7, "model.label_smoothing": 0.3}, "trials": []}
    (tmp_path / "study.json").write_text(json.dumps(view))
    assert "Parameter importances from 4 trials only: importances are indicative" in study_markdown(tmp_path)
    view["states"]["COMPLETE"] = MIN_TRIALS_FOR_IMPORTANCES
    (tmp_path / "study.json").write_text(json.dumps(view))
    assert "indicative" not in study_markdown(tmp_path)
