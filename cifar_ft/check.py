"""`python -m cifar_ft.check [train|eval|predict|export] [overrides ...]`: compose and check a command's config as
the command would before it starts (every value of every sweep with -m), and exit: `config ok` (exit 0) or the
command's one-line error (exit 2). A checkpoint it names is checked as the command would (loaded without code,
plain data, finite weights). Nothing is written, and the training stack (Lightning, the data and model
stack) is not imported: a config checks in about the time torch takes to import.
`python -m cifar_ft.check --reference [PATH]`: the configuration reference, generated from the schemas."""
from __future__ import annotations

import sys
from pathlib import Path

from cifar_ft.runs.compose import schema_message, unknown_key_message
from cifar_ft.runs.entry import check_command, expand_seeds, fail, hydra_message, user_message

COMMANDS = ("train", "eval", "predict", "export")


def check(name: str, overrides: list[str]) -> int:
    """The number of configs checked (one, or one per value of each sweep under -m)."""
    multirun = bool({"-m", "--multirun"} & set(overrides))
    overrides = [o for o in expand_seeds(overrides) if o not in ("-m", "--multirun")]
    return check_command(name, overrides, multirun)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    if argv and argv[0] == "--reference":  # the configuration reference, from the schemas
        from cifar_ft.runs.reference import reference

        text = reference()
        Path(argv[1]).write_text(text + "\n") if len(argv) > 1 else print(text)
        return
    name, overrides = (argv[0], argv[1:]) if argv and argv[0] in COMMANDS else ("train", argv)
    try:
        count = check(name, overrides)
    except Exception as exc:  # noqa: BLE001 - Hydra's and ours, as the command reports them
        message = (unknown_key_message(exc, name, overrides) or schema_message(exc) or hydra_message(exc)
                   or user_message(exc))
        if message is None:
            raise
        fail(message)
    print(f"config ok: {name} ({count} config{'s' if count > 1 else ''} checked)")


if __name__ == "__main__":
    main()
