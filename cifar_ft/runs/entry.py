"""The commands' outer shell: Hydra's main around a task, and one-line errors for everything a user
can fix (exit 2), a stop report for SIGTERM/SIGINT (exit 128 + signal), failures recorded per job in
a multirun. HYDRA_FULL_ERROR=1 keeps full tracebacks; bugs always keep theirs."""
from __future__ import annotations

import contextlib
import errno
import functools
import io
import logging
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

import hydra
from omegaconf import DictConfig

from cifar_ft.errors import ConfigError, close_matches, find_user_error
from cifar_ft.exports.folder import check_out
from cifar_ft.runs.compose import CONF_DIR, compose_config, schema_message, unknown_key_message
from cifar_ft.runs.resolvers import INTERNAL_CONFIGS, register_resolvers
from cifar_ft.runs.run_dir import discard_if_empty, guard, last_value
from cifar_ft.runs.validate import validate_config

log = logging.getLogger("cifar_ft")
T = TypeVar("T")
_USER_FULL_ERROR = "CIFAR_FT_USER_HYDRA_FULL_ERROR"  # HYDRA_FULL_ERROR as the user set it
_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT}


def command(task: Callable[[DictConfig], T], config_name: str) -> Callable[[], None]:
    """`main` of `python -m cifar_ft.<name>`: Hydra composes `conf/<config_name>.yaml` with the
    command-line overrides and runs `task(cfg)` under `report_errors`; Hydra's own errors are one
    line too. Hydra sees `task` itself (functools.wraps), so the job is named after its module; the
    configs are the repository's conf/ (an absolute path: `main()` also works when imported)."""
    register_resolvers()  # before Hydra resolves any config of this process (also joblib workers)

    @functools.wraps(task)
    def run(cfg: DictConfig) -> T | None:
        return report_errors(task, cfg)

    hydra_main = hydra.main(version_base="1.3", config_path=CONF_DIR, config_name=config_name)(run)
    return functools.partial(hydra_entry, hydra_main, config_name)


def fail(message: str) -> NoReturn:
    """The one way a command ends on a user error: one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def report_errors(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T | float | None:
    """Run `fn(cfg)`. A user error becomes one line on stderr and exit code 2; a stop by SIGTERM/SIGINT
    names the checkpoint it saved (exit 128 + signal). In a multirun a failing job is recorded in its
    directory and reports NaN, so the sweep goes on."""
    try:
        return fn(cfg)
    except SystemExit as exc:
        if not _is_stop(exc):
            raise
        _report_stop(exc)
    except Exception as exc:
        if in_multirun():  # one failing job must not end the sweep: record it, report NaN
            _record_failure(cfg, exc)
            return float("nan")
        message = user_message(exc, cfg)
        if message is None or full_errors():
            raise
        if "paths" in cfg:  # a run that failed before doing anything leaves no empty run directory
            discard_if_empty(Path(cfg.paths.output_dir), created=last_value(sys.argv[1:], "hydra.run.dir") is None)
        fail(message)


def hydra_entry(hydra_main: Callable[[], object], config_name: str | None = None) -> None:
    """Call a `@hydra.main` function so that Hydra's own errors (unknown config group option, bad
    override, unwritable run directory) are one line too, like ours. With `config_name`, the config
    the command line asks for is composed and validated first: a bad value is reported before Hydra
    creates (or writes into) a run directory."""
    os.environ.setdefault(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its multi-line report
    try:
        sys.argv[1:] = expand_seeds(sys.argv[1:])
        if config_name is not None:
            prevalidate(config_name, sys.argv[1:])
        hydra_main()
    except Exception as exc:
        message = (unknown_key_message(exc, config_name or "train", sys.argv[1:]) or schema_message(exc)
                   or hydra_message(exc) or user_message(exc))
        if message is None or full_errors():
            raise
        fail(message)


def expand_seeds(argv: list[str]) -> list[str]:
    """`seeds=N` (with -m) is the sweep `seed=0,1,...,N-1`: every setting of the sweep, N times."""
    given = [a for a in argv if a.startswith("seeds=")]
    if not given:
        return argv
    value = given[-1].split("=", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"seeds={value!r} is not valid; valid: a number of seeds >= 1 (with -m)")
    if not {"-m", "--multirun"} & set(argv):
        raise ConfigError(f"seeds={value} runs a sweep over seeds: add -m")
    if any(a.startswith("seed=") for a in argv):
        raise ConfigError(f"seeds={value} and seed=... both given; use one of them")
    return [a for a in argv if not a.startswith("seeds=")] + [f"seed={','.join(map(str, range(int(value))))}"]


def prevalidate(config_name: str, argv: list[str]) -> None:
    """Compose and validate what `argv` asks for (every value of each sweep, under -m); commands that
    only show information (--help, --cfg, --info, ...) are left to Hydra."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Hydra prints its own usage error next
            args = get_args_parser().parse_args(argv)
    except SystemExit:  # not parseable: Hydra reports it
        return
    if args.experimental_rerun:  # Hydra unpickles that file: a file must never decide what code runs
        raise ConfigError(f"--experimental-rerun={args.experimental_rerun} is refused: Hydra would unpickle that "
                          "file, which runs any code it carries; rerun a job with the overrides listed in its "
                          "<run>/.hydra/overrides.yaml instead")
    if any([args.help, args.hydra_help, args.cfg, args.info, args.shell_completion, args.config_name,
            args.config_path, args.config_dir, args.experimental_rerun]):
        return
    check_command(config_name, args.overrides, args.multirun)
    if not args.multirun:  # the run directory: not a finished run's, not in use, not empty (runs/run_dir.py)
        guard(config_name, args.overrides)


def check_command(config_name: str, overrides: list[str], multirun: bool) -> int:
    """Compose and check what a command line asks for, writing nothing: every value of each sweep under
    -m; otherwise also added keys and the command's PRECHECKS. Returns the number of configs checked."""
    variants = sweep_variants(overrides) if multirun else [overrides]
    for variant in variants:
        cfg = compose_config(variant, config_name=config_name)
        validate_config(cfg)
    if not multirun:
        check_added_keys(config_name, overrides)
        PRECHECKS.get(config_name, lambda _: None)(cfg)
    return len(variants)


def _is_stop(exc: BaseException) -> bool:
    """Lightning's SIGTERMException (a SystemExit), which a stop raises: Lightning is loaded by then, and is
    not imported for this (a one-line config error should not cost its import)."""
    lightning = sys.modules.get("lightning.pytorch.utilities.exceptions")
    return lightning is not None and isinstance(exc, lightning.SIGTERMException)


def _train_precheck(cfg: DictConfig) -> None:
    if cfg.get("ckpt_path") not in (None, "", "last"):
        from cifar_ft.runs.checkpoints import refuse_finished  # the model stack: only with a checkpoint

        refuse_finished(str(cfg.ckpt_path), None, cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps"))


def _checkpoint_precheck(cfg: DictConfig) -> None:
    from cifar_ft.runs.checkpoints import check_usable  # the model stack: these commands load it anyway

    check_usable(str(cfg.ckpt_path), bool(cfg.get("trust_checkpoint", False)), cfg.get("format"))


def _export_precheck(cfg: DictConfig) -> None:
    _checkpoint_precheck(cfg)
    if cfg.get("out"):  # the default folder lies in the run directory Hydra is about to make
        check_out(Path(cfg.out), bool(cfg.get("overwrite", False)))


# What a command checks before Hydra makes its run directory, beyond the config's values.
PRECHECKS: dict[str, Callable[[DictConfig], None]] = {"train": _train_precheck, "export": _export_precheck,
                                                      "eval": _checkpoint_precheck, "predict": _checkpoint_precheck}


def check_added_keys(config_name: str, overrides: list[str]) -> None:
    """`+foo=1` adds a top-level key that no part of the command reads: refused in one line. Keys
    added under a section (`+trainer.profiler=...`, `+callbacks.x._target_=...`) and config groups
    (`+hparams_search=optuna`) are the sections' own business (and checked there)."""
    added = [o for o in overrides if o.startswith("+") and not o.startswith("++") and "=" in o]
    roots = {o: o.lstrip("+").split("=", 1)[0].split(".")[0] for o in added}
    unknown = {o: r for o, r in roots.items() if not (Path(CONF_DIR) / r).is_dir() and r != "hydra"}
    if not unknown:
        return
    base = compose_config([o for o in overrides if o not in unknown], config_name=config_name)
    for override, root in unknown.items():
        if root not in base:
            keys = sorted(k for k in base if k != "hydra")
            raise ConfigError(f"{override}: {root!r} is not a key of the {config_name} config, so nothing would read "
                              f"it; top-level keys: {', '.join(keys)}.{close_matches(root, keys)}")


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """Override lists that together use every value of every sweep (`a=1,2 b=x,y` -> a=1 b=x, a=2 b=x,
    a=1 b=y): each value is validated once, without the full grid."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    sweeps = []
    for o in (o for o in parsed if o.is_sweep_override()):
        try:
            sweeps.append((o.get_key_element(), list(o.sweep_string_iterator())))
        except Exception:  # noqa: BLE001 - continuous ranges (Optuna intervals): left to the sweeper
            continue
    first = [f"{key}={values[0]}" for key, values in sweeps if values]
    variants = [fixed + first]
    for i, (key, values) in enumerate(sweeps):
        variants += [fixed + first[:i] + [f"{key}={v}"] + first[i + 1:] for v in values[1:]]
    return variants


def user_message(exc: BaseException, cfg: DictConfig | None = None) -> str | None:
    """One line for an error the user can fix, or None for a bug (which keeps its traceback)."""
    err = find_user_error(exc)
    if err is not None:
        return str(err)
    torch = sys.modules.get("torch")  # not imported for this: out of memory means torch ran
    if torch is not None and isinstance(exc, torch.OutOfMemoryError):
        return oom_message(exc, cfg)
    return None


def oom_message(exc: BaseException, cfg: DictConfig | None) -> str:
    batch = cfg.data.get("batch_size") if cfg is not None and "data" in cfg else None
    precision = cfg.trainer.get("precision") if cfg is not None and "trainer" in cfg else None
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "out of memory"
    half = f"data.batch_size={max(1, batch // 2)}" if isinstance(batch, int) else "a smaller data.batch_size"
    return (f"out of GPU memory at data.batch_size={batch}, trainer.precision={precision} ({first}); "
            f"try {half} (with trainer.accumulate_grad_batches=2 to keep the effective batch), "
            "trainer.precision=bf16-mixed, or a smaller model.input_size")


def hydra_message(exc: BaseException) -> str | None:
    """One line for an error Hydra raises before the task runs."""
    from hydra.errors import HydraException, MissingConfigException

    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return (f"cannot write to {exc.filename}: {exc.strerror}; choose a writable output directory with "
                "hydra.run.dir=DIR (hydra.sweep.dir=DIR with -m)")
    if not isinstance(exc, HydraException):
        return None
    text = str(exc).split("Config search path:")[0]
    missing = re.search(r"Could not (?:find|load) '([^']+)/([^'/]+)'", text)
    options = getattr(exc, "options", None)
    if isinstance(exc, MissingConfigException) and missing and options:
        group, name = missing.groups()
        options = [o for o in options if o not in INTERNAL_CONFIGS]
        return (f"{group}={name}: no such {group} config; valid: {', '.join(options)}."
                f"{close_matches(name, options)}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if getattr(exc, "override", None):  # OverrideParseException: name the override it could not parse
        lines.insert(0, f"{exc.override}:")
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        lines.append(f"({str(cause).strip().splitlines()[0]})")
    return " ".join(lines)


def full_errors() -> bool:
    """HYDRA_FULL_ERROR=1 as the user set it (see `hydra_entry`, which sets it for its own use)."""
    return os.environ.get(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "0")) == "1"


def _report_stop(exc: BaseException) -> NoReturn:
    name = getattr(exc, "signal", "SIGTERM")
    ckpt = getattr(exc, "checkpoint", None)
    if ckpt:
        run_dir = Path(ckpt).parent.parent
        print(f"stopped by {name} at step {getattr(exc, 'step', '?')}: saved {ckpt}; continue with the same "
              f"command plus ckpt_path=last hydra.run.dir={run_dir}", file=sys.stderr)
    elif getattr(exc, "phase", None) and not getattr(exc, "fitting", True):
        print(f"stopped by {name} during {exc.phase}: nothing to save (no training in this phase; checkpoints "
              "already written stay as they are); run the same command again to test", file=sys.stderr)
    elif getattr(exc, "phase", None):
        print(f"stopped by {name} during {exc.phase}, before the first training step: nothing to save yet; "
              "run the same command again to start over", file=sys.stderr)
    else:
        print(f"stopped by {name}; no checkpoint written (not fitting)", file=sys.stderr)
    sys.exit(128 + getattr(signal, name, signal.SIGTERM))


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, exc: Exception) -> None:
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    err = find_user_error(exc) or exc
    (out / "error.txt").write_text("".join(traceback.format_exception(exc)) + f"\n{type(err).__name__}: {err}\n")
    log.error("job failed (%s: %s); the sweep goes on", type(err).__name__, err)
