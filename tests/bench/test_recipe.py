"""`python -m cifar_ft.bench recipe`: every row is a training command the real conf/ accepts."""
from __future__ import annotations

import pytest

from cifar_ft.bench.recipe import BASELINE, BF16, VARIANTS
from cifar_ft.runs.validate import validate_config
from tests.conftest import make_cfg

ROWS = {**VARIANTS, "bf16": BF16}


@pytest.mark.parametrize("knob", list(ROWS))
def test_every_recipe_row_composes_and_validates(knob, tmp_path):
    # a misspelt key or an out-of-range value would only show after an hour of the other rows
    _, overrides = ROWS[knob]
    cfg = make_cfg(["experiment=cpu_transfer", f"data.root={tmp_path}", *BASELINE, *overrides], tmp_path / "run")
    validate_config(cfg)
