"""`python -m cifar_ft.bench recipe`: every row is a training command the real conf/ accepts."""
from __future__ import annotations

import pytest

from cifar_ft.bench.recipe import BASELINE, BF16_ROWS, VARIANTS
from cifar_ft.runs.validate import validate_config
from tests.conftest import make_cfg

ROWS = {**VARIANTS, **BF16_ROWS}


def test_the_baseline_is_one_pass_of_full_fine_tuning_whatever_the_preset_chooses(tmp_path):
    def cfg(*overrides):
        return make_cfg(["experiment=cpu_transfer", f"data.root={tmp_path}", *BASELINE, *overrides], tmp_path / "run")

    base = cfg()
    assert base.strategy.name == "full" and base.data.passes_per_epoch == 1
    assert "probe_head" not in base.callbacks  # a random head, as every row before the probe existed
    assert cfg(*VARIANTS["probe head"][1]).callbacks.probe_head.images == 2048
    partial = cfg(*VARIANTS["partial 6 frozen"][1]).strategy
    assert (partial.frozen_groups, partial.frozen_precision) == (6, "fp32")  # the row says 6 groups, as stored
    assert cfg(*VARIANTS["partial 4 bn 1.4 passes"][1]).strategy.frozen_groups == 4
    fp32, bf16 = cfg(*VARIANTS["partial 4 frozen"][1]).strategy, cfg(*BF16_ROWS["frozen bf16 4"][1]).strategy
    assert {**fp32, "frozen_precision": "bf16"} == bf16 and fp32.frozen_precision == "fp32"  # one change
    five = cfg(*BF16_ROWS["frozen bf16 5"][1]).strategy
    assert {**bf16, "frozen_groups": 5} == five  # one more frozen block than `frozen bf16 4`, nothing else


@pytest.mark.parametrize("knob", list(ROWS))
def test_every_recipe_row_composes_and_validates(knob, tmp_path):
    # a misspelt key or an out-of-range value would only show after an hour of the other rows
    _, overrides = ROWS[knob]
    cfg = make_cfg(["experiment=cpu_transfer", f"data.root={tmp_path}", *BASELINE, *overrides], tmp_path / "run")
    validate_config(cfg)


def test_row_names_that_read_the_same_are_the_same_row():
    """Names differing only by spaces or case printed as two rows that read alike ("frozen bf16")."""
    shown = [" ".join(k.split()).lower() for k in ROWS]
    assert len(set(shown)) == len(ROWS) and all(k == " ".join(k.split()) for k in ROWS)
