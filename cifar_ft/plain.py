"""Plain data read from files: what an instantiation directive looks like, and where one hides.

A value read from a file (a checkpoint, a weights file, a run's YAML) is data, never a choice of code:
`find_directive` finds the keys by which Hydra (`_target_`, ...), Lightning (`_instantiator`) or
jsonargparse (`class_path`) would build an object, so the readers can refuse them in one line."""
from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path
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


def keyword_arguments(cls: type) -> set[str] | None:
    """Keyword arguments `cls` takes, through `**kwargs` up its bases; None when it takes any."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


# Lightning's module bases: their constructors take none of our options
_SILENT_BASES = ("LightningDataModule", "LightningModule")


def source_keywords(target: str, depth: int = 0) -> set[str] | None:
    """`keyword_arguments` of a class of this package (`cifar_ft.x.Y`), read from its source without importing
    it (a config check should not import Lightning to list ImageClassifier's options): `__init__`'s named
    parameters, and through `**kwargs` those of its bases in this package (Lightning's module bases add none).
    None when the class cannot be read this way, e.g. a base from elsewhere (the caller imports it)."""
    module, _, name = target.rpartition(".")
    spec = importlib.util.find_spec(module) if module.startswith("cifar_ft.") and depth < 8 else None
    if spec is None or not spec.origin:
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
    if found is None:
        return None
    init = next((n for n in found.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:  # inherited or generated (a dataclass): only importing it tells
        return None
    names = {a.arg for a in [*init.args.args, *init.args.kwonlyargs]} - {"self"}
    if init.args.kwarg is None:
        return names
    imported = {a.asname or a.name: f"{n.module}.{a.name}" for n in tree.body if isinstance(n, ast.ImportFrom)
                and n.module for a in n.names}
    for base in found.bases:
        label = base.attr if isinstance(base, ast.Attribute) else base.id if isinstance(base, ast.Name) else ""
        if label in _SILENT_BASES:
            continue
        path = imported.get(label, f"{module}.{label}")  # imported, or defined in the same module
        more = source_keywords(path, depth + 1) if path.startswith("cifar_ft.") else None
        if more is None:  # a base from elsewhere takes options only importing it can tell
            return None
        names |= more
    return names


def read_data(path: Path, parse, kind: type):
    """A JSON or YAML file (`parse`: `json.loads`, `yaml.safe_load`) read as plain data of `kind` (dict or
    list); an unreadable file, or one of another shape, reads as empty: its readers show what they can."""
    import yaml

    try:
        value = parse(path.read_text()) if path.is_file() else None
    except (ValueError, yaml.YAMLError, OSError, UnicodeDecodeError):
        value = None
    return value if isinstance(value, kind) else kind()
