"""Plain values, directives, and the options of our classes read from their source (no import)."""
from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cifar_ft.plain import find_directive, keyword_arguments, source_keywords
from tests.conftest import CONF_DIR, ROOT

TARGETS = sorted({m for p in Path(CONF_DIR).rglob("*.yaml")
                  for m in re.findall(r"_target_:\s*(cifar_ft\.[\w.]+)", p.read_text())})


@pytest.mark.parametrize("target", TARGETS)
def test_options_read_from_source_are_the_imported_class_options(target):
    """Where the source can tell (None: it cannot, and the check imports the class), it tells the same."""
    module, _, name = target.rpartition(".")
    read = source_keywords(target)
    obj = getattr(importlib.import_module(module), name)
    assert read is None or not isinstance(obj, type) or read == keyword_arguments(obj), target


def test_directives_are_found_anywhere_and_allowed_only_where_said():
    data = {"a": [{"b": {"_target_": "os.system"}}], "c": {"_instantiator": "x"}}
    assert find_directive(data) == "a[0].b._target_"
    assert find_directive({"c": data["c"]}) == "c._instantiator"
    assert find_directive({"x": {"_target_": "cifar_ft.data.synthetic.SyntheticDataModule"}},
                          frozenset({"x._target_"})) is None


@pytest.mark.command  # trains a run: the command tier (docs/architecture.md, Tests)
def test_a_config_check_imports_neither_lightning_nor_the_models():
    """`python -m cifar_ft.check` composes and checks, and `cifar_ft.train` (its `--help`, a one-line error)
    imports, leaving the training stack unimported until a run starts."""
    code = ("import sys; import cifar_ft.train; from cifar_ft.check import check; "
            "check('train', ['experiment=smoke']); "
            "print(sorted(m for m in ('lightning', 'torchmetrics', 'cifar_ft.models.classifier', "
            "'cifar_ft.data.datamodule') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "[]", proc.stderr[-2000:]


def test_the_check_command_says_ok_or_one_line(capsys):
    from cifar_ft.check import main

    main(["train", "experiment=smoke"])
    assert capsys.readouterr().out.strip() == "config ok: train (1 config checked)"
    main(["-m", "experiment=smoke", "optimizer.lr=1e-3,2e-3"])
    assert "(2 configs checked)" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["experiment=smoke", "data.batch_size=0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err == ["error: data.batch_size=0 is not valid; valid: an integer >= 1"]
