"""Where a run's splits came from, kept in its checkpoints, so that eval tests the run's own held-out
images and never, silently, its training images.

`record(cfg.data, datamodule)` (at training) holds the resolved data config, the split sizes and, for
data with file names (image folders), a 64-bit hash of every training/validation file name and of
every test file name (names relative to data.root; 47,000 names cost 376 KB). `RecordData` writes it
into every checkpoint. At eval, `run_data_config` rebuilds the run's own data (the default, no
`data=` needed), and `check_test_split` refuses test images that the run trained or validated on.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from cifar_ft.data.registry import check_record, module_name
from cifar_ft.errors import ConfigError

DATA_KEY = "data_provenance"
_SPLIT_IDS = ("test", "seen")


def identifiers(names: list[str]) -> torch.Tensor:
    """Sorted int64 hashes (blake2b, 8 bytes) of file names: compact, order-free split identities."""
    ids = [int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little", signed=True)
           for n in names]
    return torch.tensor(sorted(ids), dtype=torch.int64)


def fingerprint(ids: torch.Tensor) -> str:
    return hashlib.sha256(ids.numpy().tobytes()).hexdigest()[:16]


def record(data_cfg: DictConfig, datamodule) -> dict:
    """The data config (resolved, data.root absolute; its module by registry name, not by `_target_`)
    and the identities of its splits."""
    config = OmegaConf.to_container(data_cfg, resolve=True)
    target = config.pop("_target_", None)
    config = {"module": module_name(target) or f"unregistered:{target}", **config}
    root = config.get("root")
    if isinstance(root, str) and root and Path(root).exists():
        config["root"] = str(Path(root).resolve())
    splits = datamodule.splits or {}
    out = {"config": config, "sizes": {k: len(v) if v is not None else 0 for k, v in splits.items()}}
    named = {k: v.paths for k, v in splits.items() if v is not None and v.paths is not None}
    if "test" in named:
        out["test"] = identifiers(named["test"])
        out["seen"] = identifiers([n for k in ("train", "val") for n in named.get(k, [])])
        out["test_fingerprint"] = fingerprint(out["test"])
    return out


class RecordData(L.Callback):
    """Writes `checkpoint["data_provenance"]` = the run's `record(...)` whenever a checkpoint is saved."""

    def __init__(self, provenance: dict) -> None:
        self.provenance = provenance

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        checkpoint[DATA_KEY] = self.provenance


def run_data_config(ckpt: dict, path: str) -> tuple[str, dict]:
    """(registry name, options) of the data the checkpoint's run used (eval's default): plain values,
    checked by `data.registry.check_record`, never a stored `_target_` to instantiate."""
    provenance = ckpt.get(DATA_KEY)
    if provenance is None:
        raise ConfigError(f"ckpt_path={path!r} does not record its data (written before data provenance "
                          "existed); give it with data=... [data.root=...]")
    module = provenance["config"].get("module") if isinstance(provenance.get("config"), dict) else None
    if isinstance(module, str) and module.startswith("unregistered:"):
        raise ConfigError(f"ckpt_path={path!r} was trained on {module.split(':', 1)[1]}, a data module outside "
                          "cifar_ft's registry (cifar_ft.data.registry); give it with data=... [data.root=...]")
    name, options = check_record(provenance["config"], f"ckpt_path={path!r}")
    if name == "cifar":  # eval tests what the run trained on: it is on disk, and nothing is downloaded
        options["download"] = False
    return name, options


def check_provenance(provenance: object, where: str) -> None:
    """`data_provenance` as `record` writes it: known fields of plain types (the data config itself is
    checked where it is used, by `run_data_config`); ConfigError (one line) for anything else."""
    fields = {"config", "sizes", *_SPLIT_IDS, "test_fingerprint"}
    if not isinstance(provenance, dict) or not set(provenance) <= fields:
        found = sorted(map(str, provenance)) if isinstance(provenance, dict) else type(provenance).__name__
        raise ConfigError(f"{where}: its data provenance is not what cifar_ft writes (fields {found}); refused "
                          "(a crafted or damaged file?)")
    sizes = provenance.get("sizes", {})
    ok = isinstance(sizes, dict) and all(isinstance(k, str) and type(v) is int for k, v in sizes.items())
    for key in _SPLIT_IDS:
        t = provenance.get(key)
        ok = ok and (t is None or (isinstance(t, torch.Tensor) and t.dtype == torch.int64 and t.ndim == 1))
    ok = ok and isinstance(provenance.get("test_fingerprint", ""), str)
    if not ok or not isinstance(provenance.get("config", {}), dict):
        raise ConfigError(f"{where}: its data provenance holds values of the wrong type; refused (a crafted or "
                          "damaged file?)")


def check_test_split(ckpt: dict, datamodule, given: bool, allow_overlap: bool) -> dict:
    """How the tested split relates to the run's; ConfigError when its images overlap the run's
    training or validation images (unless `allow_overlap`). Returns the facts for metrics.json."""
    provenance = ckpt.get(DATA_KEY) or {}
    test = datamodule.splits.get("test") if datamodule.splits else None
    facts = {"test_split": "data given" if given else "the run's own", "num_test_images": len(test) if test else 0}
    if test is None or test.paths is None or "seen" not in provenance:
        return facts
    ids = identifiers(test.paths)
    facts["test_split_fingerprint"] = fingerprint(ids)
    facts["test_split_is_the_runs"] = bool(torch.equal(ids, provenance["test"]))
    seen = int(torch.isin(ids, provenance["seen"]).sum())
    if not given and not facts["test_split_is_the_runs"]:
        raise ConfigError(f"the data at data.root={datamodule.root!r} changed since training: its test split is "
                          f"not the run's (fingerprint {facts['test_split_fingerprint']} vs "
                          f"{provenance['test_fingerprint']})")
    if seen and not allow_overlap:
        raise ConfigError(f"{seen} of the {len(ids)} test images were training or validation images of this "
                          "run; leave data= out to test the run's own held-out split, give a separate test "
                          "folder, or allow_train_overlap=true to evaluate on them anyway")
    facts["test_images_seen_in_training"] = seen
    return facts
