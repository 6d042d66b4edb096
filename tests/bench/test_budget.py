"""`bench budget`: reference seconds become this machine's seconds by the plain-loop rate."""
from __future__ import annotations

import pytest

from cifar_ft.bench.budget import REFERENCE_RATE, budget_rows


def test_a_machine_half_as_fast_gets_twice_the_seconds():
    rows = {r["row"]: r["value"] for r in budget_rows(REFERENCE_RATE / 2)}
    assert rows["seconds here per reference second"] == pytest.approx(2.0)
    assert rows["budget of experiment=cpu_transfer"] == pytest.approx(1200.0)
    assert rows["budget of experiment=cpu_quick"] == pytest.approx(300.0)
