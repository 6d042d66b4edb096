"""Plain data read from files: what an instantiation directive looks like, and where one hides.

A value read from a file (a checkpoint, a weights file, a run's YAML) is data, never a choice of code:
`find_directive` finds the keys by which Hydra (`_target_`, ...), Lightning (`_instantiator`) or
jsonargparse (`class_path`) would build an object, so the readers can refuse them in one line."""
from __future__ import annotations

from typing import Any

# keys of an instantiation directive (Hydra, Lightning, jsonargparse): never honoured in a stored value
DIRECTIVES = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_", "_instantiator",
                        "_class_path", "class_path", "init_args"})
_SCALARS = (str, int, float, bool, type(None))


def plain(value: Any, depth: int = 0) -> bool:
    """A string, number, boolean or null, or a (short-nested) list of them."""
    if isinstance(value, _SCALARS):
        return True
    return isinstance(value, (list, tuple)) and depth < 2 and all(plain(v, depth + 1) for v in value)


def find_directive(obj: Any, allowed: frozenset[str] = frozenset(), path: str = "", depth: int = 0) -> str | None:
    """The dotted path of the first directive key in `obj` (mappings and lists are walked; anything else,
    tensors included, is a leaf), or None. `allowed`: paths where a directive is known to be harmless
    (the caller checks its value itself)."""
    if depth > 64:
        return path or "<root>"
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, (list, tuple)) else ()
    for key, value in items:
        here = (f"{path}.{key}" if path else str(key)) if isinstance(obj, dict) else f"{path}[{key}]"
        if isinstance(obj, dict) and key in DIRECTIVES and here not in allowed:
            return here
        if isinstance(value, (dict, list, tuple)) and (found := find_directive(value, allowed, here, depth + 1)):
            return found
    return None
