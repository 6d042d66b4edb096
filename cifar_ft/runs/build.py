"""Objects from the composed config: callbacks, loggers, trainer settings; the config as printed and
as logged to TensorBoard's HPARAMS tab. Everything is built by `hydra.utils.instantiate`."""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from omegaconf import DictConfig, OmegaConf

from cifar_ft.callbacks.progress import ModelSummaryWithoutFlops


def build_callbacks(cfg: DictConfig | None, progress_bar: bool = True, supplied: dict[str, dict] | None = None
                    ) -> list[L.Callback]:
    """Instantiate every `callbacks.<name>` entry that is not null (no progress bar if disabled), with the
    values the run supplies to it (`supplied[name]`, see `run_supplied`); a factory may return None (off)
    or a list of callbacks (`checkpoints`: best and last)."""
    from cifar_ft.callbacks.config import callback_order

    nodes = cfg or {}
    built = [instantiate(nodes[name], **(supplied or {}).get(name, {})) for name in callback_order(list(nodes))
             if nodes[name] is not None]
    callbacks = [c for item in built for c in (item if isinstance(item, list) else [item])]
    return [c for c in callbacks if c is not None and (progress_bar or not isinstance(c, ProgressBar))]


def run_supplied(cfg: DictConfig, schedule: dict) -> dict[str, dict]:
    """What a callback node gets from the run instead of keys of its own, so each value has one home: the
    strategy's frozen phase (`schedule`, for the freeze schedule), where the run's files go
    (`paths.output_dir`), what `best` means (`optimized_metric`, `optimized_mode`) and how often the run
    logs (`trainer.log_every_n_steps`, the progress bar's refresh)."""
    folder = f"{cfg.paths.output_dir}/checkpoints"
    return {"freeze": schedule, "stop_on_signal": {"dirpath": folder},
            "checkpoints": {"dirpath": folder, "monitor": cfg.optimized_metric, "mode": cfg.optimized_mode},
            "progress_bar": {"refresh_rate": cfg.trainer.get("log_every_n_steps", 50)}}


def strategy_and_schedule(node: DictConfig) -> tuple[dict, dict]:
    """The strategy node split by who takes each option: the strategy's class its own options, the freeze
    schedule (`callbacks.freeze`) the frozen phase's length (`frozen_epochs`) and whether frozen layers'
    BatchNorm statistics adapt (`bn_statistics: adapt`, which the class sees as `trained`)."""
    options = OmegaConf.to_container(node, resolve=True)
    schedule = {"freeze_epochs": int(options.pop("frozen_epochs", 0)),
                "train_bn": options.get("bn_statistics") == "adapt"}
    if schedule["train_bn"]:
        options["bn_statistics"] = "trained"
    return options, schedule


def build_trainer(trainer_cfg: DictConfig, callbacks: list[L.Callback], loggers: list, output_dir: str
                  ) -> L.Trainer:
    """The Trainer of `trainer_cfg` in the run directory, with checkpoints written whole (temporary file +
    rename) and our model summary in place of Lightning's (no FLOPs column)."""
    from cifar_ft.runs.checkpoints import AtomicCheckpointIO

    if trainer_cfg.get("enable_model_summary", True) and not any(isinstance(c, ModelSummary) for c in callbacks):
        callbacks = [*callbacks, ModelSummaryWithoutFlops()]
    return instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False, default_root_dir=output_dir,
                       plugins=[AtomicCheckpointIO()], **trainer_settings(trainer_cfg))


class _DropLightningAdverts(logging.Filter):
    """Lightning (2.6) advertises its cloud logger at the start of every run ("💡 Tip: ... litlogger")
    and says it skips its default model summary (ours replaces it on purpose): neither says anything
    about the user's run, and in a log file both read as problems."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(("💡 Tip", "Trainer already configured with model summary"))


logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropLightningAdverts())
# Lightning 2.6's own pytree helper builds a `LeafSpec`, which torch >= 2.9 deprecates; nothing of
# ours or the user's calls it, and Lightning's next release replaces it.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


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


# The console summary: per section, the keys that tell runs apart (shown where the section has them).
SUMMARY_KEYS = {
    "model": ("backbone", "source", "pretrained", "input_size", "batch_size"),
    "strategy": ("name", "rank", "tokens"),
    "data": ("root", "max_train_images", "train_size", "val_size", "test_size", "augment"),
    "optimizer": ("lr", "weight_decay"),
    "scheduler": ("warmup_steps", "decay"),
    "trainer": ("max_epochs", "max_steps", "accelerator", "devices", "precision"),
}


def print_config(cfg: DictConfig) -> None:
    """On global rank 0: the resolved config, whole, into `<paths.output_dir>/.hydra/resolved.yaml`
    (Hydra's own config.yaml beside it keeps the interpolations), and on the console one line per section
    with the keys of `SUMMARY_KEYS` (the full tree was 167 of a smoke run's 227 console lines; `--cfg job
    --resolve` prints it without running)."""
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", 0))) != 0:
        return
    saved = Path(cfg.paths.output_dir) / ".hydra" / "resolved.yaml"
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    print("\n".join(config_summary(cfg)) + f"\n  (whole config: {saved})", flush=True)


def config_summary(cfg: DictConfig) -> list[str]:
    """`config: task_name seed=..` then `  <section>: <class> key=value ...` per section present."""
    lines = [f"config: {cfg.get('task_name')} seed={cfg.get('seed')}"
             + (f" ckpt_path={cfg.ckpt_path}" if cfg.get("ckpt_path") else "")]
    for section, keys in SUMMARY_KEYS.items():
        node = cfg.get(section)
        if not isinstance(node, DictConfig):
            continue
        target = str(node.get("_target_", "")).rsplit(".", 1)[-1]
        values = [f"{k}={OmegaConf.select(node, k)}" for k in keys if OmegaConf.select(node, k) is not None]
        lines.append(f"  {section}: " + " ".join(filter(None, [target, *values])))
    return lines


def log_hparams(loggers: list, cfg: DictConfig, results: dict[str, float | None]) -> None:
    """Flattened config into TensorBoard's HPARAMS tab, with the run's results once it has them, under
    `hp/<name>` (one point each): a placeholder logged at the start would put a NaN point at step 0 on
    the curves themselves."""
    from lightning.pytorch.loggers import TensorBoardLogger

    flat = flatten(OmegaConf.to_container(cfg, resolve=True))
    metrics = {f"hp/{k}": float(v) for k, v in results.items() if isinstance(v, (int, float))}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(flat, metrics=metrics)
        elif metrics:  # the others have their params from the start (runs/tracking.py): the results as scalars
            logger.log_metrics(metrics)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; values that are not scalars become strings."""
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out
