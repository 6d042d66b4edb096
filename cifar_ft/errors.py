"""User-facing errors: one line that names the bad value and what is valid."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A bad value supplied by the user (config, path, checkpoint). Printed as one line."""


def close_matches(value: str, valid: Iterable[str], n: int = 5) -> str:
    """A short 'did you mean' suffix listing the nearest valid names, or ''."""
    matches = difflib.get_close_matches(value, list(valid), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""
