"""The real `conf/` composed through Hydra's compose API, outside a command: for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from cifar_ft.runs.resolvers import register_resolvers

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def compose_config(overrides: list[str], output_dir: str | Path | None = None,
                   config_name: str = "train") -> DictConfig:
    """`conf/<config_name>.yaml` with `overrides`; `paths.output_dir` (the run directory a command
    would get from Hydra) set to `output_dir`."""
    register_resolvers()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    if output_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(output_dir)
    return cfg


def unknown_key_message(exc: BaseException, config_name: str, overrides: list[str]) -> str | None:
    """One line for Hydra's "Could not override 'a.b' ... not in struct" (a key the config does not have):
    the key, the closest keys of its section and the section's keys, instead of Hydra's advice to add it
    with `+` (which would only move the error). None for any other error."""
    import re

    from omegaconf import DictConfig, OmegaConf

    from cifar_ft.errors import close_matches

    text = f"{exc} {exc.__cause__ or ''}"
    if (merged := _merged_unknown_key(text)) is not None:
        return merged
    found = re.search(r"Could not override '([^']+)'", text)
    if found is None or not re.search(r"not in struct|Key '[^']+' not in '", text):
        return None
    key = found.group(1)
    from cifar_ft.callbacks.config import OPT_IN
    from cifar_ft.runs.config import GONE, MOVED

    if parent_of := next((n for n in OPT_IN if key.startswith(f"callbacks.{n}.")), None):
        return (f"{key}: callbacks.{parent_of} is opt-in; choose it with callbacks=[default,{parent_of}] (and "
                f"{key}=...; several: callbacks=[default,{','.join(OPT_IN[:2])}])")
    if key in MOVED:
        return f"{key} is now {MOVED[key]} (CHANGELOG.md); give {MOVED[key].split(' ')[0]}=... instead"
    if gone := next((k for k in GONE if key == k or key.startswith(f"{k}.")), None):
        return f"{key} was removed (CHANGELOG.md): {GONE[gone]}"
    parent, _, leaf = key.rpartition(".")
    rest = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") != key and o not in ("-m", "--multirun")]
    try:
        cfg = compose_config(rest, config_name=config_name)
    except Exception:  # noqa: BLE001 - another override fails too: Hydra's own message then
        return None
    section = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(section, DictConfig):
        return None
    keys = sorted(str(k) for k in section if not str(k).startswith("_") and str(k) != "hydra")
    where = f"the {parent} section" if parent else f"the {config_name} config"
    return f"{key}: {leaf!r} is not a key of {where}.{close_matches(leaf, keys)} (valid: {', '.join(keys)})"


def schema_message(exc: BaseException) -> str | None:
    """One line for a value of the wrong type that Hydra could not merge into a schema's field
    (`model.input_size=abc`): the key, the value and what the schema says is valid. None otherwise."""
    from omegaconf import OmegaConf
    from omegaconf.errors import ValidationError

    from cifar_ft.schema import describe, field_named

    cause = exc if isinstance(exc, ValidationError) else exc.__cause__
    if not isinstance(cause, ValidationError) or not getattr(cause, "full_key", None):
        return None
    parent = getattr(cause, "parent_node", None)
    schema = OmegaConf.get_type(parent) if parent is not None else getattr(cause, "object_type", None)
    found = field_named(schema, str(cause.key)) if isinstance(schema, type) and cause.key is not None else None
    if found is None:
        return None
    return f"{cause.full_key}={getattr(cause, 'value', None)!r} is not valid; valid: {describe(*found)}"


def _merged_unknown_key(text: str) -> str | None:
    """One line for a config file that sets a key the chosen option's schema lacks (`experiment=smoke
    scheduler=plateau`: the experiment sets scheduler.warmup_steps, which plateau does not have)."""
    import re

    from cifar_ft.schema import SCHEMAS, knobs

    found = re.search(r"In '([^']+)': ConfigKeyError raised while composing config:\s*Key '([^']+)' not in "
                      r"'(\w+)'\s*full_key: (\S+)", text)
    if found is None:
        return None
    where, _, schema_name, key = found.groups()
    schema = next((cls for cls in SCHEMAS.values() if cls.__name__ == schema_name), None)
    valid = ", ".join(f.name for f in knobs(schema)) if schema is not None else "?"
    return (f"{key}: {where} sets it, and the option chosen for {key.rsplit('.', 1)[0]} ({schema_name}) has no "
            f"such key (valid: {valid}); choose that option's own preset or leave the choice to {where}")
