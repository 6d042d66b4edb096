"""User-facing errors: one line that names the bad value and what is valid. Imports nothing of ours."""
from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


class UserError(Exception):
    """Something the user can fix; the command line prints it as one line (no traceback)."""


class ConfigError(UserError, ValueError):
    """A bad value supplied by the user (config, path, checkpoint)."""


class DivergedError(UserError, RuntimeError):
    """Training produced a non-finite loss; the message names the step and learning rates."""


def close_matches(value: str, valid: Iterable[str], n: int = 5) -> str:
    """A short 'did you mean' suffix listing the nearest valid names, or ''."""
    matches = difflib.get_close_matches(value, list(valid), n=n, cutoff=0.5)
    return f" Did you mean: {', '.join(matches)}?" if matches else ""


def check_choice(key: str, value: object, valid: Iterable[str] | dict[str, T]) -> object:
    """`value` if it is one of `valid` (names, or a registry's keys); else ConfigError
    `key='value' is not valid; valid: a, b, c` (+ the nearest names)."""
    names = list(valid)
    if value not in names:
        raise ConfigError(f"{key}={value!r} is not valid; valid: {', '.join(map(str, names))}."
                          f"{close_matches(str(value), [str(n) for n in names])}")
    return value


def find_user_error(exc: BaseException | None) -> UserError | None:
    """The UserError behind `exc`, looking through wrappers (Hydra's InstantiationException)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, UserError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
