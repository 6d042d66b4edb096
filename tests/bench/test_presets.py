"""`python -m cifar_ft.bench presets`: each preset it measures is a ready experiment with a budget, as typed
by a user, and without data it is one line before anything runs."""
from __future__ import annotations

from pathlib import Path

import pytest

from cifar_ft.bench.budget import BUDGETS_REF_S
from cifar_ft.bench.presets import PRESETS, main
from cifar_ft.runs.compose import CONF_DIR


def test_each_preset_is_an_experiment_with_a_budget():
    for preset in PRESETS:
        assert (Path(CONF_DIR) / "experiment" / f"{preset}.yaml").is_file(), preset
        assert f"experiment={preset}" in BUDGETS_REF_S, preset


def test_without_data_it_is_one_line_and_writes_no_row(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--out", str(tmp_path / "out"), "--results", str(tmp_path / "results")])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and err.startswith("error: no data given") and "\n" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "out").exists()
