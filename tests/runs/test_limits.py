"""Rules that span config nodes (runs/limits.py), on the real conf/: a schedule that leaves its strategy
nothing to train, duplicate list values, bounds that size memory, trainer.devices, calibration without a
validation split. Each is one ConfigError naming the key and what is valid."""
from __future__ import annotations

import pytest

from cifar_ft.errors import ConfigError
from cifar_ft.runs.validate import validate_config


@pytest.mark.parametrize("overrides,named", [
    (["strategy=lp_ft", "trainer.max_epochs=1"], "strategy=lp_ft with trainer.max_epochs=1: its frozen phase"),
    (["strategy=gradual", "trainer.max_epochs=1", "strategy.frozen_epochs=1"],
     "strategy=gradual with trainer.max_epochs=1"),
    (["robustness=corruptions", "robustness.corruptions=[fog,fog]"], "'fog' is listed twice"),
    (["robustness=corruptions", "robustness.severities=[2,3,2]"], "2 is listed twice"),
    (["data.passes_per_epoch=1e9"], "data.passes_per_epoch=1000000000.0 is not valid; valid: a number in (0.0, 100.0]"),
    (["trainer.devices=0"], "trainer.devices=0 is not valid; valid: auto, -1"),
    (["trainer.devices=-3"], "trainer.devices=-3 is not valid"),
    (["trainer.devices=[0,0]"], "trainer.devices=[0, 0] is not valid"),
    (["calibrate=temperature", "data.val_size=0"], "calibrate=temperature with data.val_size=0"),
])
def test_cross_node_rules_refuse_in_one_line(cfg_factory, overrides, named):
    with pytest.raises(ConfigError) as info:
        validate_config(cfg_factory(*overrides))
    assert named in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("overrides", [
    ["strategy=lp_ft", "trainer.max_epochs=2"], ["strategy=gradual", "trainer.max_epochs=2"],
    ["robustness=corruptions", "robustness.corruptions=[fog,snow]"], ["trainer.devices=1"], ["trainer.devices=auto"],
    ["data.passes_per_epoch=100"], ["calibrate=temperature"], ["data.val_size=0"],
])
def test_what_is_valid_passes(cfg_factory, overrides):
    validate_config(cfg_factory(*overrides))
