"""Checkpoints: written so that a kill never truncates one, read back with checks, found by name.

- `AtomicCheckpointIO` (the trainer's checkpoint plugin, runs/build.build_trainer): every checkpoint
  is written to a temporary file in the same directory, flushed to disk, then renamed over the
  target. A process killed at any moment (SIGKILL, power loss) leaves either the previous file or the
  new one, never a truncated one.
- `read_checkpoint` / `load_classifier`: one of our checkpoints, checked, for eval and predict; no
  code runs on load (`weights_only=True`) unless the user passed `trust_checkpoint=true`.
- `resolve_ckpt` / `resume_target` / `check_resumable`: what `ckpt_path=...` and `resume=true` point at,
  and whether training can continue from it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from cifar_ft.backbones.weights import load_torch_file, refuse_unsafe
from cifar_ft.errors import ConfigError
from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.options import flat_hparams, grouped_hparams
from cifar_ft.runs.stored import check_checkpoint
from cifar_ft.strategies import STRATEGIES
from cifar_ft.strategies.checkpoint import BASE_KEY


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into `.<name>.tmp-<pid>`, fsync, `os.replace` onto the target, fsync the directory."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if "://" in str(path):  # remote file systems: fsspec's own semantics
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(path.parent)
        for stale in path.parent.glob(f".{path.name}.tmp-*"):  # left by writers that were killed
            stale.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    # The rename itself is durable only once the directory entry reaches the disk.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_checkpoint(path: str, trust: bool = False, mmap: bool = False) -> dict:
    """One of our checkpoints (model hyperparameters checked), loaded on the CPU without running code."""
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path!r}: no such checkpoint file")
    ckpt = load_torch_file(path, "ckpt_path", trust, mmap=mmap)
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not hparams or not isinstance(hparams, dict) or "backbone" not in hparams:
        raise ConfigError(f"ckpt_path={path!r} is not a cifar_ft checkpoint (no model hyperparameters)")
    check_checkpoint(ckpt, f"ckpt_path={path!r}")
    return ckpt


def load_classifier(path: str, trust: bool = False, ckpt: dict | None = None) -> ImageClassifier:
    """The model of one of our checkpoints, on the CPU. Built without pretrained weights, unless the
    checkpoint is a small one (cifar_ft.strategies.checkpoint): its base weights come from there.
    `ckpt`: the file's contents when the caller has read them already (`read_checkpoint`)."""
    refuse_unsafe(path, "ckpt_path", trust)
    if ckpt is None:
        ckpt = load_torch_file(path, "ckpt_path", trust)
        check_checkpoint(ckpt, f"ckpt_path={path!r}")
    hparams = grouped_hparams(ckpt["hyper_parameters"])  # older checkpoints: flat keys
    backbone = dict(hparams["backbone"])
    if BASE_KEY not in ckpt:
        backbone["pretrained"] = False
    model = ImageClassifier(**{**hparams, "backbone": backbone,
                               "compiler": {**hparams.get("compiler", {}), "enabled": False}})
    model.on_load_checkpoint(ckpt)  # as Lightning's load_from_checkpoint: the hook, then the weights
    model.load_state_dict(ckpt["state_dict"], strict=True)
    refuse_nonfinite(model.state_dict(), path)
    return model


def refuse_nonfinite(state: dict[str, torch.Tensor], path: str) -> None:
    """A diverged or corrupted model would print nan probabilities or export a NaN model."""
    bad = [n for n, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ConfigError(f"ckpt_path={path!r} holds non-finite weights (NaN/inf) in {len(bad)} tensor(s), "
                          f"e.g. {bad[0]}; use an earlier checkpoint of the run")


def check_usable(path: str, trust: bool, fmt: str | None = None) -> None:
    """Before eval, predict or export writes anything: the checkpoint loads without code, is plain data of
    our shape (`stored.check_checkpoint`), has finite weights and, for `format=peft`, adapters to export."""
    ckpt = read_checkpoint(path, trust, mmap=True)
    refuse_nonfinite(ckpt.get("state_dict", {}), path)
    name = (ckpt["hyper_parameters"].get("strategy") or {}).get("name", "full")
    if fmt == "peft" and not hasattr(STRATEGIES[name], "peft_config"):
        raise ConfigError(f"format=peft needs a checkpoint of strategy=lora or dora; ckpt_path={path!r} is "
                          f"strategy={name} (export it with format=timm|onnx|torch_export)")


def choose_temperature(model: ImageClassifier, calibrate: str | None, path: str) -> float:
    """The temperature eval, predict and export apply: the checkpoint's (`calibrate` null), none
    (`none`: 1.0), or the checkpoint's, required (`temperature`: a checkpoint without one is an error)."""
    if calibrate == "none":
        model.set_temperature(1.0)
    elif calibrate == "temperature" and float(model.temperature) == 1.0:
        raise ConfigError(f"calibrate=temperature: ckpt_path={path!r} holds no fitted temperature; train with "
                          "calibrate=temperature, or use calibrate=null|none")
    return float(model.temperature)


def check_classes(ckpt_names: list[str], data_names: list[str], path: str) -> None:
    if list(ckpt_names) != list(data_names):
        raise ConfigError(f"checkpoint {path!r} was trained on {len(ckpt_names)} classes {list(ckpt_names)} "
                          f"but the data set has {len(data_names)} classes {list(data_names)}")


def resolve_ckpt(ckpt_path: str | None, output_dir: Path, trust: bool = False) -> str | None:
    """`last` -> <run dir>/checkpoints/last.ckpt; other paths must exist and load without code
    (unless trusted)."""
    if ckpt_path in (None, ""):
        return None
    path = output_dir / "checkpoints" / "last.ckpt" if ckpt_path == "last" else Path(ckpt_path)
    if not path.is_file():
        hint = " (ckpt_path=last resumes <hydra.run.dir>/checkpoints/last.ckpt: pass that run's hydra.run.dir)"
        raise ConfigError(f"ckpt_path={ckpt_path!r}: no checkpoint at {path}" + (hint if ckpt_path == "last" else ""))
    refuse_unsafe(path, "ckpt_path", trust)
    return str(path)


def refuse_finished(path: str, output_dir: Path | None, max_epochs: int | None, max_steps: int | None) -> None:
    """A checkpoint of another, finished run (its directory holds `metrics.json`) at or past this run's
    end: fit would train 0 steps and this run would report that run's checkpoints and results as its
    own. Read memory-mapped: only `epoch` and `global_step` are looked at. `output_dir`: this run's
    directory (None before Hydra made it: then it is a new one)."""
    run = Path(path).resolve().parent.parent
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - a legacy or trusted pickle: Lightning reads (and checks) it in fit
        return
    check_checkpoint(ckpt, f"ckpt_path={path!r}")  # a crafted file: refused before the run directory exists
    if (output_dir is not None and run == output_dir.resolve()) or not (run / "metrics.json").is_file():
        return
    epoch, step = int(ckpt.get("epoch", -1)), int(ckpt.get("global_step", -1))
    done_epochs = max_epochs is not None and max_epochs >= 0 and epoch + 1 >= max_epochs
    done_steps = max_steps is not None and max_steps >= 0 and step >= max_steps
    if done_epochs or done_steps:
        limit = f"trainer.max_epochs={max_epochs}" if done_epochs else f"trainer.max_steps={max_steps}"
        raise ConfigError(f"ckpt_path={path!r} is the checkpoint of a finished run (epoch {epoch}, step {step}; "
                          f"results in {run / 'metrics.json'}): with {limit} nothing is left to train. Test it "
                          f"with python -m cifar_ft.eval ckpt_path={path}, or train on with a larger "
                          f"{limit.split('=')[0]}")


def check_resumable(path: str, model: ImageClassifier, trust: bool = False) -> None:
    """`ckpt_path` for training: one of our training checkpoints (Lightning's loop state and a state
    dict), readable without running code, of the model this run builds. Checked before fit, because
    fit would end a truncated file, a raw pickle, a legacy-format file or another architecture's
    checkpoint in a long traceback; read memory-mapped where the format allows (zip files)."""
    ckpt = load_torch_file(path, "ckpt_path", trust, mmap=True)
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if isinstance(state, dict):
        check_checkpoint(ckpt, f"ckpt_path={path!r}")
    if not isinstance(state, dict) or "pytorch-lightning_version" not in ckpt:
        raise ConfigError(f"ckpt_path={path!r} is not a cifar_ft training checkpoint (no Lightning loop state or "
                          "state dict); resume from a run's checkpoints/last.ckpt, or start weights from a file "
                          "with model.pretrained=...")
    theirs, ours = flat_hparams(ckpt.get("hyper_parameters") or {}), flat_hparams(dict(model.hparams))
    for key in ("backbone", "num_classes"):
        if key in theirs and theirs[key] != ours.get(key):
            raise ConfigError(f"ckpt_path={path!r} was trained with {key}={theirs[key]!r} but this run builds "
                              f"{key}={ours.get(key)!r}; pass that run's model (and data), or start from its "
                              "weights with model.pretrained=...")
    live = model.state_dict()
    foreign = [k for k, t in state.items() if k not in live or tuple(t.shape) != tuple(live[k].shape)]
    if foreign:
        k = foreign[0]
        found = (f"shape {tuple(live[k].shape)} here, {tuple(state[k].shape)} there" if k in live
                 else "not in this model")
        raise ConfigError(f"ckpt_path={path!r} does not fit the model this run builds: {len(foreign)} tensor(s) "
                          f"differ, e.g. {k} ({found}); pass the model and strategy that run used")
