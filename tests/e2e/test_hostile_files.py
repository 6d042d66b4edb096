"""No file decides what code runs: instantiation directives planted in every field of every file a command
reads are refused (or ignored, where the field is only shown), nothing runs, nothing outside the run
directory changes, and a refusal is one line (exit 2).

A payload is a Hydra `_target_` node (or Lightning's `_instantiator`) that would, if instantiated,
write a marker file or empty a victim file: `builtins.open(victim, "w")`, `torch.load` of a pickle that
touches the marker, `pickle.loads` of base64-decoded bytes (nested: the inner node is instantiated
first), `importlib.import_module` of a module that writes the marker on import.

New file kinds join `CHECKPOINT_COMMANDS` (a command reading a checkpoint) or get a test of their own
below (run directories, sweep directories, study storage)."""
from __future__ import annotations

import base64
import importlib
import json
import logging
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from cifar_ft.errors import ConfigError
from cifar_ft.runs.stored import check_checkpoint


class _Touch:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


@dataclass
class Trap:
    root: Path      # everything outside the run directories: must not change
    marker: Path    # appears if any payload runs
    victim: Path    # emptied if builtins.open(victim, "w") runs

    def payloads(self) -> dict[str, object]:
        evil = self.root / "evil.pkl"
        return {
            "open": {"_target_": "builtins.open", "file": str(self.victim), "mode": "w"},
            "torch_load": {"_target_": "torch.load", "f": str(evil), "weights_only": False},
            "pickle_loads": {"_target_": "pickle.loads",
                             "data": {"_target_": "base64.b64decode",
                                      "s": base64.b64encode(pickle.dumps(_Touch(str(self.marker)))).decode()}},
            "import_module": {"_target_": "importlib.import_module", "name": "cifar_ft_hostile_marker"},
            "instantiator": {"_instantiator": "lightning.pytorch.cli.instantiate_module",
                             "class_path": "pathlib.Path", "init_args": {"args": [str(self.marker)]}},
        }

    def untouched(self, before: dict[str, bytes]) -> None:
        assert not self.marker.exists(), "a payload ran"
        assert snapshot(self.root) == before, "a file outside the run directory changed"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "runs" not in p.relative_to(folder).parts}


@pytest.fixture
def trap(tmp_path, monkeypatch) -> Trap:
    t = Trap(tmp_path, tmp_path / "MARKER", tmp_path / "victim.txt")
    t.victim.write_text("precious")
    torch.save(_Touch(str(t.marker)), tmp_path / "evil.pkl")
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "cifar_ft_hostile_marker.py").write_text(
        f"from pathlib import Path\nPath({str(t.marker)!r}).touch()\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    return t


def checkpoint_fields(ckpt: dict) -> list[str]:
    """Every field a payload can take the place of: each hyperparameter, data option and record field,
    each top-level entry, one tensor of the state dict, and a new directive at each level."""
    hparams = ckpt["hyper_parameters"]
    fields = [f"hyper_parameters.{k}" for k in hparams]
    fields += [f"hyper_parameters.{k}.{f}" for k, v in hparams.items() if k != "strategy" and isinstance(v, dict)
               for f in v]  # each field of each option group
    fields += [f"data_provenance.config.{k}" for k in ckpt["data_provenance"]["config"]]
    fields += [f"data_provenance.{k}" for k in ckpt["data_provenance"]]
    fields += [f"preprocessing.{k}" for k in ckpt["preprocessing"]]
    fields += [k for k in ckpt if k not in ("state_dict", "hyper_parameters")]
    fields += [f"state_dict.{next(iter(ckpt['state_dict']))}", "base_weights",
               "hyper_parameters.strategy.name", "hyper_parameters.strategy.extra"]
    return fields + [f"{level}._target_" if level else "_target_"
                     for level in ("", "hyper_parameters", "data_provenance", "data_provenance.config")]


def planted(ckpt: dict, field: str, payload: object) -> dict:
    """A copy of `ckpt` with `payload` at `field` (dotted path; missing levels are made)."""
    out = dict(ckpt)
    node, *rest = field.split(".", 1) if field != "_target_" else ["_target_"]
    if not rest:
        out[node] = payload
        return out
    head, tail = rest[0].split(".", 1) if "." in rest[0] and node != "state_dict" else (rest[0], None)
    inner = dict(out.get(node) or {})
    if tail is None:
        inner[head] = payload
    else:
        inner[head] = planted({"x": dict(inner.get(head) or {})}, f"x.{tail}", payload)["x"]
    out[node] = inner
    return out


@pytest.fixture(scope="module")
def clean_ckpt(smoke_run) -> dict:
    return torch.load(smoke_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def test_every_field_of_a_checkpoint_is_checked(clean_ckpt, trap):
    """Unit level, every field x every payload: refused as data, before anything is built."""
    before = snapshot(trap.root)
    check_checkpoint(clean_ckpt, "ckpt")  # what we write passes
    for field in checkpoint_fields(clean_ckpt):
        for name, payload in trap.payloads().items():
            with pytest.raises(ConfigError, match="is refused"):
                check_checkpoint(planted(clean_ckpt, field, payload), f"{field} {name}")
    trap.untouched(before)


# command -> its arguments; {ckpt}: the planted checkpoint, {dir}: a folder with an image
CHECKPOINT_COMMANDS = {
    "eval": ["ckpt_path={ckpt}"],
    "predict": ["ckpt_path={ckpt}", "inputs=[{dir}]"],
    "export": ["ckpt_path={ckpt}"],
    "resume": ["experiment=smoke", "ckpt_path={ckpt}", "trainer.max_epochs=5"],
    "pretrained": ["experiment=smoke", "model.pretrained={ckpt}", "trainer.max_epochs=1"],
}


def run_command(module: str, argv: list[str], capfd) -> tuple[int, list[str]]:
    """`python -m cifar_ft.<module> ARGV` in this process, as the command line runs it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    old = sys.argv
    sys.argv = [module, *argv]
    code = 0
    try:
        importlib.import_module(f"cifar_ft.{module}").main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = old
        root.handlers[:], root.level = handlers, level
    out, err = capfd.readouterr()
    return code, (out + err).strip().splitlines()


@pytest.mark.parametrize("command", list(CHECKPOINT_COMMANDS))
def test_commands_refuse_a_planted_checkpoint_in_one_line(command, clean_ckpt, smoke_run, trap, capfd):
    """Each command that reads a checkpoint, on checkpoints with each payload in a rotating set of fields
    (every field is met by some command): exit 2, one line, no marker, nothing outside its run changed,
    no run directory left behind."""
    fields = checkpoint_fields(clean_ckpt)
    names = list(trap.payloads())
    offset = list(CHECKPOINT_COMMANDS).index(command)
    chosen = fields[offset::len(CHECKPOINT_COMMANDS)] + ["data_provenance.config.augment", "hyper_parameters.tta"]
    (trap.root / "images").mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(trap.root / "images" / "x.png")
    before = snapshot(trap.root)
    for i, field in enumerate(chosen):
        name = names[(i + offset) % len(names)]
        ckpt_file = trap.root / "ckpts" / f"{i}.ckpt"
        ckpt_file.parent.mkdir(exist_ok=True)
        torch.save(planted(clean_ckpt, field, trap.payloads()[name]), ckpt_file)
        before[str(ckpt_file.relative_to(trap.root))] = ckpt_file.read_bytes()
        run = trap.root / "runs" / f"{command}-{i}"
        args = [a.format(ckpt=ckpt_file, dir=trap.root / "images") for a in CHECKPOINT_COMMANDS[command]]
        module = "train" if command in ("resume", "pretrained") else command
        code, lines = run_command(module, [*args, f"hydra.run.dir={run}"], capfd)
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (field, name, lines[-5:])
        assert not run.exists(), (field, name)
        trap.untouched(before)


def _copy_run(smoke_run: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(smoke_run, dest, ignore=shutil.ignore_patterns("junk", "tensorboard"))
    (dest / ".hydra").mkdir(exist_ok=True)
    return dest


def _plant_yaml_and_json(run: Path, payload: dict) -> None:
    """Payloads in each field of the run's `.hydra/config.yaml` data node, its overrides and metrics.json."""
    import yaml

    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text()) if \
        (run / ".hydra" / "config.yaml").is_file() else {"data": {}}
    config["data"] = {**{k: payload for k in (config.get("data") or {"root": 0})}, "_target_": payload}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (run / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([payload, "seed=1"]))
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**{k: payload for k in metrics}, "_target_": payload}))


def test_a_run_directory_with_planted_files_exports_and_explores_as_data(smoke_run, trap, capfd):
    """export reads the run's .hydra/ and metrics.json for the model card: shown as text, never built;
    the notebook's `explore.test_images` rebuilds data from config.yaml: refused in one line."""
    from cifar_ft.sweeps.explore import test_images

    for name, payload in trap.payloads().items():
        run = _copy_run(smoke_run, trap.root / "runs" / name)
        _plant_yaml_and_json(run, payload)
        before = snapshot(trap.root)
        code, lines = run_command("export", [f"ckpt_path={run}/checkpoints/last.ckpt", f"out={run}/exported",
                                             f"hydra.run.dir={run}/export_run"], capfd)
        assert code == 0, lines[-5:]
        trap.untouched(before)
        with pytest.raises(ConfigError, match="stored data config holds '_target_'|names no data module"):
            test_images(run, [0])
        trap.untouched(before)


def test_a_sweep_directory_with_planted_files_is_summarised_as_data(smoke_run, trap, capfd):
    """`python -m cifar_ft.sweep DIR` (summary) and `... RUN RUN` (comparison) read job files as data."""
    from cifar_ft.sweep import main as sweep_main

    sweep = trap.root / "runs" / "sweep"
    for i, payload in enumerate(trap.payloads().values()):
        _plant_yaml_and_json(_copy_run(smoke_run, sweep / str(i)), payload)
    before = snapshot(trap.root)
    sweep_main([str(sweep)])
    sweep_main([str(sweep / "0"), str(sweep / "1"), "--out", str(sweep / "compare")])
    capfd.readouterr()
    trap.untouched(before)
    assert (sweep / "summary.csv").is_file() and (sweep / "compare" / "compare.md").is_file()


def test_eval_of_an_older_checkpoint_rebuilds_its_data_by_registry_and_runs_no_planted_option(clean_ckpt, trap, capfd):
    """Checkpoints written before `module` named their data module by its `_target_` path: a registered one
    still evaluates; any planted option in it is refused (on main before this rule, builtins.open ran)."""
    legacy = dict(clean_ckpt)
    config = dict(clean_ckpt["data_provenance"]["config"])
    config["_target_"] = "cifar_ft.data.synthetic.SyntheticDataModule"
    del config["module"]
    legacy["data_provenance"] = {**clean_ckpt["data_provenance"], "config": config}
    (trap.root / "ckpts").mkdir()
    torch.save(legacy, trap.root / "ckpts" / "legacy.ckpt")
    code, lines = run_command("eval", [f"ckpt_path={trap.root / 'ckpts' / 'legacy.ckpt'}",
                                       f"hydra.run.dir={trap.root / 'runs' / 'legacy'}"], capfd)
    assert code == 0 and (trap.root / "runs" / "legacy" / "metrics.json").is_file(), lines[-5:]
    before = snapshot(trap.root)
    for name, payload in trap.payloads().items():
        for key in ("augment", "root", "_target_"):
            planted_ckpt = {**legacy, "data_provenance": {**legacy["data_provenance"],
                                                          "config": {**config, key: payload}}}
            path = trap.root / "ckpts" / f"{name}-{key}.ckpt"
            torch.save(planted_ckpt, path)
            before[str(path.relative_to(trap.root))] = path.read_bytes()
            code, lines = run_command("eval", [f"ckpt_path={path}", f"hydra.run.dir={trap.root / 'runs' / name}"],
                                      capfd)
            assert code == 2 and len(lines) == 1 and "is refused" in lines[0], (name, key, lines[-5:])
            trap.untouched(before)


def test_a_rerun_sweeps_job_files_and_study_attributes_are_data(cfg_factory, trap):
    """A re-run sweep reads each job's job.json and metrics.json, and the study's trial attributes: planted
    directives are plain values there (another config, no result, no job number), never built."""
    from types import SimpleNamespace

    from cifar_ft.sweeps.jobs import fingerprint, previous_attempt
    from cifar_ft.sweeps.storage import JOB_ATTR, job_number

    cfg = cfg_factory()
    before = snapshot(trap.root)
    for i, payload in enumerate(trap.payloads().values()):
        job = trap.root / "runs" / f"job{i}"
        job.mkdir(parents=True)
        (job / "job.json").write_text(json.dumps({"config": payload}))
        with pytest.raises(ConfigError, match="holds a job with another config"):
            previous_attempt(cfg, job, "val/acc")
        (job / "job.json").write_text(json.dumps({"config": fingerprint(cfg)}))
        (job / "metrics.json").write_text(json.dumps({"val/acc_best": payload}))
        attempt = previous_attempt(cfg, job, "val/acc")
        assert attempt.action == "skip" and attempt.result != attempt.result  # NaN: no number was there
        trial = SimpleNamespace(number=3, system_attrs={JOB_ATTR: payload, "retry_history": [payload]})
        assert job_number(trial) == 3
        trap.untouched(before)
