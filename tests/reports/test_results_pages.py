"""Results as data: the tables of the README and the docs come from results/*.jsonl, never typed by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.reports.results_data import append_rows, bench_command, read_rows
from cifar_ft.reports.results_pages import regenerate, render
from cifar_ft.results import ROOT, default_pages
from cifar_ft.results import main as results_main

PAGE = """# Results
before
<!-- results:presets -->
stale
<!-- /results:presets -->
<!-- results:gpu-status -->
<!-- /results:gpu-status -->
<!-- results:benches -->
<!-- /results:benches -->
after
"""


def preset_row(test_acc: float) -> dict:
    return {"preset": "experiment=cpu_quick", "val_acc": 0.81, "test_acc": test_acc, "wall_s": 143.9,
            "reference_s": 129.6}


def test_a_changed_figure_in_the_data_is_in_the_regenerated_page(tmp_path):
    results, page = tmp_path / "results", tmp_path / "README.md"
    page.write_text(PAGE)
    append_rows(results, "presets", [preset_row(0.8131)], "python -m cifar_ft.bench presets --data DIR")
    assert regenerate([page], results) == [page]
    text = page.read_text()
    assert "| experiment=cpu_quick | 0.8100 | 0.8131 | 143.9 |" in text and "stale" not in text
    assert text.startswith("# Results\nbefore\n") and text.endswith("after\n")  # the rest is left alone
    assert "no figure has been measured with `python -m cifar_ft.bench gpu`" in text
    # the figure changes in the data file: the page follows, nobody types it
    path = results / "presets.jsonl"
    row = json.loads(path.read_text())
    path.write_text(json.dumps({**row, "test_acc": 0.8275}) + "\n")
    assert results_main([str(page), "--results", str(results), "--check"]) == 1  # stale, nothing written
    assert "0.8131" in page.read_text()
    assert results_main([str(page), "--results", str(results)]) == 0
    assert "| 0.8275 |" in page.read_text() and "0.8131" not in page.read_text()
    assert results_main([str(page), "--results", str(results), "--check"]) == 0


def test_the_newest_row_of_each_preset_is_the_current_one(tmp_path):
    results = tmp_path / "results"
    append_rows(results, "presets", [preset_row(0.70)], "c")
    rows = read_rows(results)["presets"]
    newer = {**rows[0], "run": "2999-01-01T00:00:00Z", "test_acc": 0.90}
    with (results / "presets.jsonl").open("a") as f:
        f.write(json.dumps(newer) + "\n")
    text = render(PAGE, read_rows(results), "page")
    assert "| 0.9000 |" in text and "| 0.7000 |" not in text.split("<!-- /results:presets -->")[0]


def test_rows_carry_their_provenance_and_hide_the_users_data_path(tmp_path):
    append_rows(tmp_path, "budget", [{"row": "r", "value": 1.0}], bench_command("budget", ["--data", "/home/me/x"]))
    row = read_rows(tmp_path)["budget"][0]
    assert {"run", "date", "commit", "device", "machine", "cpu_flags", "command"} <= set(row)
    assert row["command"] == "python -m cifar_ft.bench budget --data DIR"


def test_an_unknown_block_is_one_line():
    with pytest.raises(ConfigError, match="results block 'presetz' is unknown"):
        render("<!-- results:presetz -->\n<!-- /results:presetz -->", {}, "page")


def test_the_readme_and_docs_are_what_the_committed_results_generate():
    pages = default_pages(ROOT)
    assert Path(ROOT / "README.md") in pages
    assert regenerate(pages, ROOT / "results", check=True) == [], "run python -m cifar_ft.results"
