"""Every knob's schema, walked: each field refuses a wrong-typed and an out-of-range value in one line
naming its key, through the real conf/ and the command line's checks; conf/'s YAML holds only what
differs from the schemas' defaults; every field has its help."""
from __future__ import annotations

import copy
import dataclasses
import functools
import re
import typing
from pathlib import Path

import pytest
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from cifar_ft.callbacks.config import OPT_IN
from cifar_ft.runs.compose import CONF_DIR, compose_config, schema_message, unknown_key_message
from cifar_ft.runs.entry import user_message
from cifar_ft.runs.resolvers import register_resolvers
from cifar_ft.runs.validate import validate_config
from cifar_ft.schema import SCHEMAS, hints, knobs

register_resolvers()

# (group, name) -> (the overrides that compose a config on it, the key prefix of its fields)
WHERE = {("data", "cifar"): (["data=cifar10"], "data."), ("data", "image_folder"): (["data=image_folder"], "data."),
         ("data", "synthetic"): (["data=synthetic"], "data."), ("model", "model"): ([], "model."),
         ("scheduler", "warmup"): (["scheduler=cosine"], "scheduler."),
         ("scheduler", "plateau"): (["scheduler=plateau"], "scheduler."), ("run", "train"): ([], "")}
COMMAND = {("run", "eval"): "eval", ("run", "predict"): "predict", ("run", "export"): "export"}
for key in COMMAND:
    WHERE[key] = (["ckpt_path=none.ckpt"] if key != ("run", "predict") else ["ckpt_path=none.ckpt", "inputs=x.jpg"], "")
for (group, name) in SCHEMAS:
    if group in ("optimizer", "strategy"):
        WHERE[(group, name)] = ([f"{group}={name}"], f"{group}.")
    elif group == "logger":  # each tracker's keys under its own name, once chosen
        WHERE[(group, name)] = ([f"logger={name}"], f"logger.{name}.")
    elif group == "callbacks":  # an opt-in callback's keys exist once it is chosen
        WHERE[(group, name)] = ([f"callbacks=[default,{name}]"] if name in OPT_IN else [], f"callbacks.{name}.")


def _bad_values(field: dataclasses.Field, hint: object) -> list[str]:
    """Command-line values the field must refuse: one of the wrong type, and one out of its range."""
    meta, out = field.metadata, []
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    if "int" in text or "float" in text:
        out.append("abc" if "str" not in text else "[1,2,3,4,5]")
    elif text.startswith("bool"):
        out.append("maybe")
    elif "list" in text:
        out.append("7")
    elif meta["choices"] is not None:
        out.append("no_such_choice")
    elif meta["check"] is not None:
        # an empty list where any value may come (predict's inputs), else a string its own rule refuses
        # (a regex that does not compile)
        out.append("[]" if hint is typing.Any else "'['")
    for bound, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
        if meta[bound] is not None:
            value = meta[bound] + step
            out.append(str(int(value)) if "float" not in text and float(value).is_integer() else repr(float(value)))
    if meta["length"]:
        out.append("[" + ",".join(["0.5"] * (meta["length"] + 1)) + "]")
    return out


CASES = [(group, name, f.name, bad) for (group, name), cls in sorted(SCHEMAS.items())
         for f in knobs(cls) for bad in _bad_values(f, hints(cls)[f.name])]


def _message(overrides: list[str], config_name: str = "train") -> str | None:
    try:
        validate_config(compose_config(overrides, config_name=config_name))
    except Exception as exc:  # noqa: BLE001 - what the command line would print
        return (unknown_key_message(exc, config_name, overrides) or schema_message(exc) or user_message(exc)
                or repr(exc))
    return None


@functools.cache
def _composed(overrides: tuple[str, ...], config_name: str) -> DictConfig:
    return compose_config(list(overrides), config_name=config_name)


def _message_on(overrides: list[str], override: str, config_name: str) -> str | None:
    """As `_message(overrides + [override])`, the config composed once per node: the override's value is
    parsed by Hydra's own grammar and set on the typed config as Hydra sets it (a wrong type fails there),
    then checked as the command checks it."""
    cfg = copy.deepcopy(_composed(tuple(overrides), config_name))
    parsed = OverridesParser.create().parse_override(override)
    try:
        OmegaConf.update(cfg, parsed.key_or_group, parsed.value(), merge=True)
        validate_config(cfg)
    except Exception as exc:  # noqa: BLE001 - what the command line would print
        return schema_message(exc) or user_message(exc) or repr(exc)
    return None


def test_every_schema_field_is_walked():
    walked = {(g, n, k) for g, n, k, _ in CASES}
    for (group, name), cls in SCHEMAS.items():
        assert (group, name) in WHERE, f"no conf/ option composes schema/{group}/{name}"
        for f in knobs(cls):
            free = f.metadata["choices"] is None and f.metadata["check"] is None
            if free and hints(cls)[f.name] in (str, str | None):
                continue  # a free string (a name, a path, a regex): the command line cannot mistype it
            assert (group, name, f.name) in walked, f"{group}/{name}: {f.name} has no value to refuse"


@pytest.mark.parametrize(("group", "name", "key", "bad"), CASES, ids=[f"{g}.{n}.{k}={b}" for g, n, k, b in CASES])
def test_a_wrong_typed_or_out_of_range_value_is_one_line_naming_the_key(group, name, key, bad):
    overrides, prefix = WHERE[(group, name)]
    message = _message_on(overrides, f"{prefix}{key}={bad}", COMMAND.get((group, name), "train"))
    assert message is not None, f"{prefix}{key}={bad} was accepted"
    assert "\n" not in message and f"{prefix}{key}" in message, message


# one wrong-typed and one out-of-range value per config group, through a whole composition as the command
# line composes it (the walk above sets values on a config composed once)
SAMPLE = sorted({(g, n, k, b) for g, n, k, b in CASES if (g, n) in {("data", "image_folder"), ("model", "model"),
                 ("strategy", "lora"), ("optimizer", "sgd"), ("scheduler", "warmup"), ("callbacks", "freeze"),
                 ("run", "train"), ("run", "eval")}})


@pytest.mark.parametrize(("group", "name", "key", "bad"), SAMPLE, ids=[f"{g}.{n}.{k}={b}" for g, n, k, b in SAMPLE])
def test_the_command_lines_composition_refuses_them_too(group, name, key, bad):
    overrides, prefix = WHERE[(group, name)]
    message = _message([*overrides, f"{prefix}{key}={bad}"], COMMAND.get((group, name), "train"))
    assert message is not None and "\n" not in message and f"{prefix}{key}" in message, message


def _extended(path: Path) -> list[tuple[str, str, str]]:
    """(group, name, package) of each schema a conf YAML extends."""
    text = path.read_text()
    found = re.findall(r"- /schema/(\w+)/(\w+)@(\w+)", text)
    if path.parent.name == "model" and re.search(r"^  - base$", text, re.M):
        found.append(("model", "model", "_here_"))
    return found


@pytest.mark.parametrize("path", sorted(Path(CONF_DIR).rglob("*.yaml")), ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_conf_holds_only_what_differs_from_the_schemas(path):
    data = yaml.safe_load(path.read_text()) or {}
    for group, name, package in _extended(path):
        node = data if package == "_here_" else data.get(package) or {}
        if path.parent.name == "strategy" or package not in ("_here_",) and path.parent.name != "callbacks":
            node = data.get(package) or {}
        cls = SCHEMAS[(group, name)]
        defaults = {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                    for f in knobs(cls)}
        same = [k for k, v in node.items() if k in defaults and v == defaults[k] and type(v) is type(defaults[k])]
        assert not same, f"{path.name}: {same} repeat the defaults of schema/{group}/{name}"


def test_every_knob_has_its_help():
    for (group, name), cls in SCHEMAS.items():
        for f in knobs(cls):
            assert f.metadata["help"].strip(), f"{group}/{name}: {f.name} has no help"


def test_a_misspelt_key_is_one_line_naming_the_nearest():
    message = _message(["data.batch_sise=64"])
    assert message.startswith("data.batch_sise:") and "batch_size" in message and "\n" not in message


GROUPS = {p.name for p in Path(CONF_DIR).iterdir() if p.is_dir()}


def _leaves(node: object) -> int:
    if isinstance(node, dict):
        return sum(_leaves(v) for k, v in node.items() if not (str(k).startswith("_") and str(k).endswith("_")))
    return 1


def test_the_default_train_config_has_at_most_90_knobs_and_8_top_level_scalars():
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(compose_config([]), resolve=False)
    assert _leaves(cfg) <= 90, _leaves(cfg)
    scalars = [k for k, v in cfg.items() if not isinstance(v, dict) and k not in GROUPS]  # `robustness: null`: a group
    assert len(scalars) <= 8, scalars


def test_no_knob_is_defined_in_two_places():
    """A rule of validate.py is for a node without a schema (Lightning's Trainer); a key that moved or went
    is in no config; a schema's field is declared once (subclasses only change a default)."""
    from omegaconf import DictConfig, OmegaConf

    from cifar_ft.runs.config import GONE, MOVED
    from cifar_ft.runs.validate import CHOICES, RULES

    configs = {name: compose_config(["ckpt_path=x", "inputs=x"] if name == "predict" else
                                    ["ckpt_path=x"] if name != "train" else [], config_name=name)
               for name in ("train", "eval", "predict", "export")}
    for key in [*RULES, *CHOICES]:
        parent = OmegaConf.select(configs["train"], key.rpartition(".")[0])
        assert isinstance(parent, DictConfig) and OmegaConf.get_type(parent) is dict, f"{key} has a schema"
    for name, cfg in configs.items():
        for key in [*MOVED, *GONE]:
            assert OmegaConf.select(cfg, key, default="absent") == "absent", f"{key} is still in {name}"
    for cls in SCHEMAS.values():
        for f in knobs(cls):
            owners = [base for base in cls.__mro__ if f.name in getattr(base, "__annotations__", {})]
            for sub, base in zip(owners, owners[1:]):
                same = {k: v for k, v in f.metadata.items() if k != "help"} == \
                    {k: v for k, v in dict(base.__dataclass_fields__[f.name].metadata).items() if k != "help"}
                assert same, f"{cls.__name__}.{f.name}: {sub.__name__} changes the rule of {base.__name__}'s field"


def test_the_configuration_reference_is_generated_from_the_schemas():
    """docs/configuration.md is what `python -m cifar_ft.check --reference` writes, and lists every field."""
    from cifar_ft.runs.reference import reference

    text = reference()
    assert (Path(CONF_DIR).parent / "docs" / "configuration.md").read_text() == text + "\n", \
        "docs/configuration.md is stale: python -m cifar_ft.check --reference docs/configuration.md"
    for (group, name), cls in SCHEMAS.items():
        for f in knobs(cls):  # each field with its type, default and help
            row = re.search(rf"^\| `[\w.]*\b{f.name}` \| `(.+?)` \| .* \| `(.*?)` \| (.*) \|$", text, re.M)
            assert row, f"{group}/{name}: {f.name} is not listed with a type, default and help"
            assert row.group(1) and row.group(2) and row.group(3).strip(), f"{group}/{name}: {f.name}"
