"""How the freeze schedule unfreezes layer groups (`callbacks.freeze.unfreeze=<name>`), in a module light to
import: the config checks that run before a command starts read the names."""
from __future__ import annotations

from collections.abc import Callable


def _all_at_once(n_groups: int, epochs_unfrozen: int, groups_per_epoch: int) -> int:
    return n_groups


def _gradual(n_groups: int, epochs_unfrozen: int, groups_per_epoch: int) -> int:
    return min(n_groups, epochs_unfrozen * groups_per_epoch)


# callbacks.freeze.unfreeze -> how many layer groups (from the deep end) train in the
# `epochs_unfrozen`-th epoch after the frozen phase (1 = the first unfrozen epoch)
UNFREEZE_MODES: dict[str, Callable[[int, int, int], int]] = {"all": _all_at_once, "gradual": _gradual}
