"""`python -m cifar_ft.bench imports`: whole-process timings of what a user waits for, per checkout."""
from __future__ import annotations

from cifar_ft.bench.imports import COMMANDS, ROOT, timed


def test_a_checkout_without_the_command_is_skipped_and_ours_is_timed(tmp_path):
    assert timed(tmp_path, COMMANDS["check experiment=smoke"]) is None  # an older checkout: no cifar_ft.check
    seconds = timed(ROOT, COMMANDS["one-line config error"])
    assert seconds is not None and 0 < seconds < 120
