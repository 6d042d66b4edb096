"""Who may write into a run directory, decided before Hydra creates it or writes `.hydra/` into it.

`guard(config_name, overrides)` runs in `cifar_ft.runs.entry.prevalidate`, after the config is
validated and before Hydra's main; only for single runs (a multirun's job directories belong to the
sweep, `cifar_ft.sweeps.jobs`) and only on the launching process (global rank 0 on node 0: other
DDP ranks and nodes, started with `LOCAL_RANK` / `RANK` / `NODE_RANK` set, join the directory it
holds). With `hydra.run.dir=DIR`:

- an empty value is refused (Hydra would write into the current directory);
- `train` into a directory that holds a run's results (`metrics.json` or a checkpoint) is refused
  unless it continues that run (`ckpt_path=last`); `eval` into one is refused;
- `ckpt_path=last` needs `DIR/checkpoints/last.ckpt`, and without
  `hydra.run.dir` it is refused at once (a new directory has no last.ckpt);
- the process then holds an exclusive lock on `DIR/.cifar_ft.lock` until it exits, so a second run
  started into the same directory is refused in one line instead of both writing there.

`discard_if_empty(directory)`: after a user error, a run directory this process created that holds
nothing but Hydra's own files is removed, so a failed command leaves no empty run behind.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path
from typing import IO

from cifar_ft.errors import ConfigError

LOCK_NAME = ".cifar_ft.lock"
_held: dict[str, IO] = {}  # run directory -> open lock file, held for the life of the process
_created: set[str] = set()  # run directories this process made (removable when a run fails at once)


def last_value(overrides: list[str], key: str) -> str | None:
    """The value of the last `key=value` override (also `+key=` / `++key=`), or None."""
    values = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").split("=", 1)[0] == key and "=" in o]
    return values[-1] if values else None


def holds_results(directory: Path) -> list[str]:
    """What in `directory` shows a run was there: `metrics.json`, checkpoint files."""
    found = ["metrics.json"] if (directory / "metrics.json").is_file() else []
    return found + sorted(f"checkpoints/{p.name}" for p in (directory / "checkpoints").glob("*.ckpt"))


# set per process by Lightning's DDP launcher, torchrun (one launcher per node) and SLURM
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def launching_process() -> bool:
    """Whether this is the run's first process (global rank 0 of node 0), which owns the directory."""
    return all(os.environ.get(name, "0") == "0" for name in RANK_VARIABLES)


def guard(config_name: str, overrides: list[str]) -> None:
    """The checks above, then the lock (see the module docstring)."""
    if not launching_process():
        return
    run_dir = last_value(overrides, "hydra.run.dir")
    ckpt = last_value(overrides, "ckpt_path")
    continuing = ckpt == "last" or bool(
        run_dir and ckpt and Path(ckpt).expanduser().resolve().parent == (Path(run_dir) / "checkpoints").resolve())
    if run_dir is not None and not run_dir.strip():
        raise ConfigError("hydra.run.dir= is empty (the run would write into the current directory); give a "
                          "directory, or leave it out for outputs/<task>/<date_time>")
    if run_dir is None:
        if continuing and config_name == "train":
            raise ConfigError("ckpt_path=last continues the run in hydra.run.dir, but no "
                              "hydra.run.dir=DIR was given and a new run directory has no checkpoints/last.ckpt")
        return
    if "${" in run_dir:  # an interpolation (a date, an env variable): a new directory, Hydra resolves it
        return
    directory = Path(run_dir)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"hydra.run.dir={run_dir!r} is a file, not a directory; choose a directory")
    _check_contents(config_name, directory, run_dir, continuing)
    if config_name in ("train", "eval"):  # the commands that write a run's results
        _lock(directory, run_dir)


def _check_contents(config_name: str, directory: Path, run_dir: str, continuing: bool) -> None:
    results = holds_results(directory)
    if config_name == "train" and continuing and not (directory / "checkpoints" / "last.ckpt").is_file():
        raise ConfigError(f"ckpt_path=last: no checkpoint at {directory / 'checkpoints' / 'last.ckpt'}; "
                          "hydra.run.dir must be the directory of the run to continue")
    if config_name == "train" and results and not continuing:
        raise ConfigError(f"hydra.run.dir={run_dir!r} holds a run already ({', '.join(results[:3])}); continue it "
                          "with ckpt_path=last, or choose a new directory (nothing there is overwritten)")
    if config_name == "eval" and results:
        raise ConfigError(f"hydra.run.dir={run_dir!r} holds a run's results ({', '.join(results[:3])}), which eval "
                          "would overwrite; choose a new directory for the evaluation")


def _lock(directory: Path, run_dir: str) -> None:
    key = str(directory.resolve())
    if key in _held:
        return
    if not directory.exists():
        _created.add(key)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle = open(directory / LOCK_NAME, "a")  # noqa: SIM115 - held open until the process exits
    except OSError as exc:
        raise ConfigError(f"cannot write to hydra.run.dir={run_dir!r} ({exc.strerror}); choose a writable "
                          "directory") from exc
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise ConfigError(f"hydra.run.dir={run_dir!r} is in use by another running command (it holds "
                          f"{LOCK_NAME}); wait for it to end, or choose another directory") from exc
    _held[key] = handle


def discard_if_empty(directory: Path, created: bool) -> None:
    """Remove `directory` if this process created it (`created`, or made by `guard`) and it holds
    only Hydra's files (`.hydra/`, the job's `.log`) and our lock: a command that failed before doing
    anything leaves nothing behind."""
    key = str(directory.resolve()) if directory.exists() else None
    if key is None or not launching_process() or not (created or key in _created):
        return
    names = {p.name for p in directory.iterdir()}
    if any(not (n in {".hydra", LOCK_NAME} or n.endswith(".log")) for n in names):
        return
    handle = _held.pop(key, None)
    if handle is not None:
        handle.close()
    shutil.rmtree(directory, ignore_errors=True)


def resume_target(ckpt_path: str | None, resume: bool) -> str | None:
    """`resume=true` is `ckpt_path=last`; both at once must not disagree."""
    if not resume:
        return ckpt_path
    if ckpt_path not in (None, "", "last"):
        raise ConfigError(f"resume=true resumes checkpoints/last.ckpt but ckpt_path={ckpt_path!r} names another; "
                          "set only one of them")
    return "last"
