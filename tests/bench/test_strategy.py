"""`python -m cifar_ft.bench strategy`: each Lite row is the strategy as itself, whatever
experiment=cpu_transfer chooses for its own recipe."""
from __future__ import annotations

import pytest

from cifar_ft.bench.strategy import AS_ITSELF, LITE_STRATEGIES, SPLITS
from cifar_ft.runs.validate import validate_config
from tests.conftest import make_cfg


@pytest.mark.parametrize("strategy", list(LITE_STRATEGIES))
def test_every_lite_row_is_the_strategy_as_itself(strategy, tmp_path):
    cfg = make_cfg(["experiment=cpu_transfer", f"data.root={tmp_path}", *SPLITS, *AS_ITSELF,
                    f"strategy={strategy}", *LITE_STRATEGIES[strategy]], tmp_path / "run")
    validate_config(cfg)
    assert cfg.data.passes_per_epoch == 1 and "probe_head" not in cfg.callbacks
    if strategy == "partial":  # partial's own 6 groups, computed in fp32 as stored
        assert (cfg.strategy.frozen_groups, cfg.strategy.frozen_precision) == (6, "fp32")
