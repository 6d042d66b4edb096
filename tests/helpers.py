"""Test-only callbacks, importable by Hydra through `+callbacks.<name>._target_=tests.helpers.X`."""
from __future__ import annotations

import lightning as L
import torch


class Recorder(L.Callback):
    """Records, at each train epoch start (after the freeze schedule ran), which backbone parameters
    require grad, the optimizer's groups, and the frozen BatchNorm statistics."""

    records: list[dict] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        opt = trainer.optimizers[0]
        Recorder.records.append({
            "epoch": trainer.current_epoch,
            "requires_grad": {n: p.requires_grad for n, p in pl_module.backbone.named_parameters()},
            "groups": [(g.get("name"), g["lr"], g.get("initial_lr"), len(g["params"])) for g in opt.param_groups],
            "bn_mean": _bn(pl_module),
        })

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Recorder.records[-1]["bn_mean_end"] = _bn(pl_module)


def _bn(pl_module) -> torch.Tensor | None:
    bn = getattr(pl_module.backbone, "bn1", None)
    return bn.running_mean.clone() if bn is not None else None


def state(path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


class DumpBackbone(L.Callback):
    """Each rank saves its backbone weights at the end of fit (to compare ranks under DDP)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sd = {k: v.detach().cpu().clone() for k, v in pl_module.backbone.state_dict().items()}
        torch.save(sd, f"{self.path}/rank{trainer.global_rank}.pt")


class Snapshot(L.Callback):
    """Keeps the weights at fit start and the datamodule at fit end (class attributes)."""

    initial: dict[str, torch.Tensor] = {}
    datamodule = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Snapshot.initial = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Snapshot.datamodule = trainer.datamodule
