"""Entry-point plumbing shared by train/eval: one-line errors, config printing, trainer settings."""
from __future__ import annotations

import errno
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from cifar_ft.errors import ConfigError, close_matches, find_user_error

log = logging.getLogger("cifar_ft")
_USER_FULL_ERROR = "CIFAR_FT_USER_HYDRA_FULL_ERROR"  # HYDRA_FULL_ERROR as the user set it


def job_gpu(job_num: int | str, num_gpus: int | str) -> list[int]:
    """`${job_gpu:${hydra:job.num},K}`: job N of a parallel sweep gets GPU N mod K (one GPU per job)."""
    return [int(job_num) % max(1, int(num_gpus))]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("job_gpu"):
        OmegaConf.register_new_resolver("job_gpu", job_gpu)


def report_errors(fn: Callable[[DictConfig], object], cfg: DictConfig):
    """Run `fn(cfg)`. A user error becomes one line on stderr and exit code 2; a stop by SIGTERM/SIGINT
    names the checkpoint it saved (exit 128 + signal). In a multirun a failing job is recorded in its
    directory and reports NaN, so the sweep goes on. HYDRA_FULL_ERROR=1 shows full tracebacks."""
    try:
        return fn(cfg)
    except SIGTERMException as exc:
        _report_stop(exc, cfg)
    except Exception as exc:
        if _in_multirun():  # one failing job must not end the sweep: record it, report NaN
            _record_failure(cfg, exc)
            return float("nan")
        message = user_message(exc, cfg)
        if message is None or full_errors():
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def user_message(exc: BaseException, cfg: DictConfig | None = None) -> str | None:
    """One line for an error the user can fix, or None for a bug (which keeps its traceback)."""
    err = find_user_error(exc)
    if err is not None:
        return str(err)
    if isinstance(exc, torch.OutOfMemoryError):
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


def full_errors() -> bool:
    """HYDRA_FULL_ERROR=1 as the user set it (see `hydra_entry`, which sets it for its own use)."""
    return os.environ.get(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "0")) == "1"


def _report_stop(exc: BaseException, cfg: DictConfig) -> None:
    name = getattr(exc, "signal", "SIGTERM")
    ckpt = getattr(exc, "checkpoint", None)
    if ckpt:
        run_dir = Path(ckpt).parent.parent
        print(f"stopped by {name} at step {getattr(exc, 'step', '?')}: saved {ckpt}; continue with the same "
              f"command plus ckpt_path=last hydra.run.dir={run_dir}", file=sys.stderr)
    else:
        print(f"stopped by {name}; no checkpoint written (not fitting)", file=sys.stderr)
    sys.exit(128 + getattr(signal, name, signal.SIGTERM))


def hydra_entry(hydra_main: Callable[[], object]) -> None:
    """Call a `@hydra.main` function so that Hydra's own errors (unknown config group option, bad
    override, unwritable run directory) are one line too, like ours."""
    os.environ.setdefault(_USER_FULL_ERROR, os.environ.get("HYDRA_FULL_ERROR", "0"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing its multi-line report
    try:
        hydra_main()
    except Exception as exc:
        message = hydra_message(exc) or user_message(exc)
        if message is None or full_errors():
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


_WRITE_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.ENOTDIR, errno.EEXIST, errno.EDQUOT}


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
        return (f"{group}={name}: no such {group} config; valid: {', '.join(options)}."
                f"{close_matches(name, options)}")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if getattr(exc, "override", None):  # OverrideParseException: name the override it could not parse
        lines.insert(0, f"{exc.override}:")
    cause = exc.__cause__
    if cause is not None and str(cause).strip():
        lines.append(f"({str(cause).strip().splitlines()[0]})")
    return " ".join(lines)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, exc: Exception) -> None:
    import traceback

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    err = find_user_error(exc) or exc
    (out / "error.txt").write_text("".join(traceback.format_exception(exc)) + f"\n{type(err).__name__}: {err}\n")
    log.error("job failed (%s: %s); the sweep goes on", type(err).__name__, err)


def print_config(cfg: DictConfig) -> None:
    """The resolved config as YAML (rich syntax highlighting), on global rank 0 only."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:
        return
    from rich.console import Console
    from rich.syntax import Syntax

    text = OmegaConf.to_yaml(cfg, resolve=True)
    Console(stderr=False).print(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))


def trainer_settings(trainer_cfg: DictConfig) -> dict:
    """Resolve the `auto` precision and `null` benchmark defaults for this machine."""
    out = {}
    gpu = torch.cuda.is_available() and trainer_cfg.get("accelerator") in ("auto", "gpu", "cuda")
    if trainer_cfg.get("precision") == "auto":
        out["precision"] = "bf16-mixed" if gpu and torch.cuda.is_bf16_supported() else "32-true"
    if trainer_cfg.get("benchmark") is None:
        out["benchmark"] = bool(gpu and not trainer_cfg.get("deterministic"))
    if gpu:
        torch.set_float32_matmul_precision("high")  # TF32 for the fp32 parts (head, loss)
    return out


def resolve_ckpt(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`last` -> <run dir>/checkpoints/last.ckpt; other paths must exist."""
    if ckpt_path in (None, ""):
        return None
    path = output_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = " (ckpt_path=last resumes <hydra.run.dir>/checkpoints/last.ckpt: pass that run's hydra.run.dir)"
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no checkpoint at {path}" + (hint if ckpt_path == "last" else ""))
    return str(path)
