"""One home per knob. A config node's schema is a dataclass next to the code it configures (peft's
`LoraConfig` is the model): each field's type, default, allowed values or range, and one line of help.

- Hydra composes every config group option on its schema (stored in Hydra's ConfigStore under
  `schema/<group>/<option>`, extended by the option's YAML file, which holds only what differs):
  an unknown key or a wrong type fails composition; `cifar_ft.runs.compose` turns that into one line.
- `check_node` checks the ranges and choices of the composed values against the same fields, so a
  knob's rule is written once, beside its default and help; `cifar_ft.runs.validate` keeps only the
  rules that span nodes.
- The configuration reference (`python -m cifar_ft.check --reference`) is generated from the fields.

A leaf module: dataclasses and typing only (the registries of choices are imported where a schema
lives, and given here as tuples or as functions that return them)."""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable
from typing import Any

from cifar_ft.errors import ConfigError, close_matches

SCHEMAS: dict[tuple[str, str], type] = {}   # (config group, name) -> schema: conf's `/schema/<group>/<name>`


def schema(group: str, name: str) -> Callable[[type], type]:
    """Class decorator: this dataclass is `/schema/<group>/<name>`, which the group's YAML options extend."""
    def register(cls: type) -> type:
        SCHEMAS[(group, name)] = cls
        return cls
    return register


def knob(default: Any, help: str, *, choices: Iterable | Callable[[], Iterable] | None = None,  # noqa: A002
         ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
         length: int | None = None, valid: str | None = None, check: Callable[[Any], bool] | None = None) -> Any:
    """A schema field. `choices`: the valid values (or a function returning a registry, called only
    when the value is checked); `ge`/`gt`/`le`/`lt`: bounds of a number (or of each item of a list);
    `length`: a list's length; `check` + `valid`: any other rule, and how to say what is valid."""
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt, "length": length,
            "valid": valid, "check": check}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def knobs(cls: type) -> list[dataclasses.Field]:
    """The user's fields of a schema: those made with `knob` (not `_target_`-style keys, not a root's nodes)."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def type_ok(hint: Any, value: Any) -> bool:
    """`value` is of the field's type (`true` is no count; an int is a float; None only if Optional)."""
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(a, value) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple):
        return isinstance(value, (list, tuple)) and all(type_ok(args[0], v) for v in value) if args else True
    if origin is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return _real(value)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _type_name(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _type_name(a) for a in args)
    if origin in (list, tuple):
        return f"a list of {_PLURAL.get(args[0], 'values')}" if args else "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


_PLURAL = {int: "integers", float: "numbers", str: "strings"}


def _bounds(meta: dict) -> str:
    """`>= 1`, `> 0`, or `in [0, 1)` for two bounds."""
    low = ("[", meta["ge"]) if meta["ge"] is not None else ("(", meta["gt"]) if meta["gt"] is not None else None
    high = ("]", meta["le"]) if meta["le"] is not None else (")", meta["lt"]) if meta["lt"] is not None else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>=' if low[0] == '[' else '>'} {low[1]}"
    return f"{'<=' if high[0] == ']' else '<'} {high[1]}" if high else ""


def _choices(meta: dict) -> list | None:
    choices = meta["choices"]
    return None if choices is None else list(choices() if callable(choices) else choices)


def describe(field: dataclasses.Field, hint: Any) -> str:
    """What is valid for a field, in words: `an integer >= 1`, `a, b`, `null or a number in (0, 1]`."""
    meta = field.metadata
    if meta.get("valid"):
        return meta["valid"]
    nullable = type_ok(hint, None)
    if (choices := _choices(meta)) is not None:
        text = ", ".join("null" if c is None else str(c) for c in choices)
    else:
        base = _type_name(hint).replace("null | ", "").replace(" | null", "")
        text = base.replace("a list of", f"a list of {meta['length']}") if meta["length"] else base
        text += f" {_bounds(meta)}" if _bounds(meta) else ""
    return f"null or {text}" if nullable and "null" not in text else text


def _in_bounds(meta: dict, value: Any) -> bool:
    items = value if isinstance(value, (list, tuple)) else [value]
    for v in items:
        if not _real(v):
            continue
        if ((meta["ge"] is not None and v < meta["ge"]) or (meta["gt"] is not None and v <= meta["gt"])
                or (meta["le"] is not None and v > meta["le"]) or (meta["lt"] is not None and v >= meta["lt"])):
            return False
    return True


def field_ok(field: dataclasses.Field, hint: Any, value: Any) -> bool:
    """Whether `value` is valid for the field: type, choices, bounds, length, and its own rule."""
    meta = field.metadata
    if not type_ok(hint, value):
        return False
    if value is None:
        return True
    if (choices := _choices(meta)) is not None and value not in choices:
        return False
    if meta["length"] is not None and len(value) != meta["length"]:
        return False
    return _in_bounds(meta, value) and (meta["check"] is None or bool(meta["check"](value)))


def hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def check_node(cls: type, values: dict[str, Any], prefix: str) -> None:
    """ConfigError (one line: key, value, what is valid) for the first field of `values` that its schema
    refuses; absent keys (and values not resolvable here, given as `...`) are skipped."""
    types_ = hints(cls)
    for f in knobs(cls):
        value = values.get(f.name, ...)
        if value is ... or field_ok(f, types_[f.name], value):
            continue
        choices = _choices(f.metadata)
        near = close_matches(str(value), [str(c) for c in choices]) if choices and isinstance(value, str) else ""
        raise ConfigError(f"{prefix}{f.name}={value!r} is not valid; valid: {describe(f, types_[f.name])}"
                          + (f".{near}" if near else ""))


def _yaml(value: Any) -> str:
    """A default as it is written in YAML and on the command line: null, true, 0.1, [0.9, 0.999], auto."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def field_named(cls: type, name: str) -> tuple[dataclasses.Field, Any] | None:
    for f in knobs(cls):
        if f.name == name:
            return f, hints(cls)[name]
    return None


def type_name(hint: Any) -> str:
    """A field's type as the reference shows it: `int`, `float | None`, `list[float]`."""
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "").replace("NoneType", "None")


def reference_rows(cls: type) -> list[tuple[str, str, str, str, str]]:
    """(name, type, valid values, default, help) per field: the configuration reference's rows."""
    types_ = hints(cls)
    rows = []
    for f in knobs(cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = "required" if default is dataclasses.MISSING or default == "???" else _yaml(default)
        rows.append((f.name, type_name(types_[f.name]), describe(f, types_[f.name]), shown,
                     f.metadata.get("help", "")))
    return rows
