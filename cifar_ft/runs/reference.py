"""The configuration reference, generated from the schemas (never typed by hand): one section per schema,
the options of conf/ that use it, and a row per field (key, valid values, default, help).
`python -m cifar_ft.check --reference [PATH]` prints it or writes it to PATH."""
from __future__ import annotations

import re
from pathlib import Path

from cifar_ft.runs.compose import CONF_DIR
from cifar_ft.runs.resolvers import INTERNAL_CONFIGS
from cifar_ft.runs.schemas import register_schemas
from cifar_ft.schema import SCHEMAS, reference_rows

# where a group's fields live in the composed config (callbacks: under their own name)
PREFIX = {"data": "data.", "model": "model.", "optimizer": "optimizer.", "scheduler": "scheduler.",
          "strategy": "strategy.", "run": ""}
COMMANDS = {"train": "python -m cifar_ft.train", "eval": "python -m cifar_ft.eval",
            "predict": "python -m cifar_ft.predict", "export": "python -m cifar_ft.export"}


def users(group: str, name: str) -> list[str]:
    """The conf/ options built on schema/<group>/<name> (`data=cifar10`), or the command for a run schema."""
    if group == "run":
        return [COMMANDS[name]]
    texts = {p.stem: p.read_text() for p in sorted((Path(CONF_DIR) / group).glob("*.yaml"))}
    based = {stem for stem, text in texts.items() if re.search(rf"- /schema/{group}/{name}@", text)}
    while grown := {stem for stem, text in texts.items()
                    if stem not in based and set(re.findall(r"^  - (\w+)$", text, re.M)) & based}:
        based |= grown  # options that extend one of them (model=tiny extends model=base)
    opt_in = {stem for stem, text in texts.items() if group == "callbacks" and stem != "default"
              and not re.search(r"^  - default$", text, re.M)}  # chosen beside the default callbacks
    return [f"{group}=default (always)" if stem == "default" else
            f"callbacks=[default,{stem}]" if stem in opt_in else f"{group}={stem}"
            for stem in sorted(based - set(INTERNAL_CONFIGS))]


def reference() -> str:
    register_schemas()
    lines = ["# Configuration reference", "",
             "Generated from the schemas (`python -m cifar_ft.check --reference`): every field a config node "
             "has, what is valid, its default and what it does. A YAML option of conf/ holds only what "
             "differs from these defaults.", ""]
    for (group, name), cls in sorted(SCHEMAS.items()):
        prefix = PREFIX.get(group, f"{group}.{name}.")
        lines += [f"## {group}: {name}", "", " ".join((cls.__doc__ or "").split()), "",
                  "Used by: " + ", ".join(f"`{u}`" for u in users(group, name)), "",
                  "| key | type | valid | default | help |", "|---|---|---|---|---|"]
        lines += [f"| `{prefix}{key}` | `{_cell(kind)}` | {_cell(valid)} | `{default}` | {_cell(help_)} |"
                  for key, kind, valid, default, help_ in reference_rows(cls)]
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
