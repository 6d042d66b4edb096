"""The user-facing error helpers: one line naming the bad value and the valid ones."""
from __future__ import annotations

import pytest

from cifar_ft.errors import ConfigError, check_choice, find_user_error


def test_check_choice_names_key_value_valid_and_nearest():
    assert check_choice("data.augment", "rrc", {"none": 1, "rrc": 2}) == "rrc"
    with pytest.raises(ConfigError) as info:
        check_choice("data.augment", "jiter", ["none", "basic", "jitter"])
    assert str(info.value) == "data.augment='jiter' is not valid; valid: none, basic, jitter. Did you mean: jitter?"


def test_user_error_is_found_behind_wrappers():
    try:
        try:
            raise ConfigError("bad value")
        except ConfigError as inner:
            raise RuntimeError("instantiation failed") from inner
    except RuntimeError as outer:
        assert str(find_user_error(outer)) == "bad value"
    assert find_user_error(ZeroDivisionError()) is None
