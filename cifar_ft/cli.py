"""Entry-point plumbing shared by train/eval: one-line errors, config printing, trainer settings."""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from cifar_ft.errors import ConfigError, find_config_error

log = logging.getLogger("cifar_ft")


def job_gpu(job_num: int | str, num_gpus: int | str) -> list[int]:
    """`${job_gpu:${hydra:job.num},K}`: job N of a parallel sweep gets GPU N mod K (one GPU per job)."""
    return [int(job_num) % max(1, int(num_gpus))]


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("job_gpu"):
        OmegaConf.register_new_resolver("job_gpu", job_gpu)


def report_errors(fn: Callable[[DictConfig], object], cfg: DictConfig):
    """Run `fn(cfg)`; a ConfigError becomes one line on stderr and exit code 2 (full trace with
    HYDRA_FULL_ERROR=1)."""
    try:
        return fn(cfg)
    except Exception as exc:
        if _in_multirun():  # one failing job must not end the sweep: record it, report NaN
            _record_failure(cfg, exc)
            return float("nan")
        err = find_config_error(exc)
        if err is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _record_failure(cfg: DictConfig, exc: Exception) -> None:
    import traceback

    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    err = find_config_error(exc) or exc
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
