"""Test-only callbacks, importable by Hydra through `+callbacks.<name>._target_=tests.helpers.X`."""
from __future__ import annotations

import os
import signal

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
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


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


class SignalAt(L.Callback):
    """Sends `signal` to this very process during the optimizer step that makes global_step `step`
    (SIGKILL: a hard crash mid-step; SIGTERM/SIGINT: the run must stop right after that step)."""

    def __init__(self, step: int, signal: str = "SIGKILL", rank: int | None = None) -> None:
        self.step, self.signal, self.rank = step, signal, rank  # rank: only that DDP rank is signalled

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step - 1 and self.rank in (None, trainer.global_rank):
            os.kill(os.getpid(), getattr(signal, self.signal))


class SignalInPhase(L.Callback):
    """Sends `signal` to this process (only on `rank`, if given) as batch `batch` of `phase`
    ("validation": fit's validation in epoch `epoch`, not the sanity check; "test": any test) starts."""

    def __init__(self, phase: str, batch: int = 0, epoch: int = 0, signal: str = "SIGTERM",
                 rank: int | None = None) -> None:
        self.phase, self.batch, self.epoch, self.signal, self.rank = phase, batch, epoch, signal, rank

    def _maybe(self, trainer: L.Trainer, phase: str, batch_idx: int) -> None:
        if (phase == self.phase and batch_idx == self.batch and (phase == "test" or trainer.current_epoch == self.epoch)
                and not trainer.sanity_checking and self.rank in (None, trainer.global_rank)):
            print(f"signal sent at {__import__('time').time()}", flush=True)
            os.kill(os.getpid(), getattr(signal, self.signal))

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._maybe(trainer, "validation", batch_idx)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._maybe(trainer, "test", batch_idx)


class PoisonAt(L.Callback):
    """Before optimizer step `step`: NaN into the head weights, or raise an out-of-memory error."""

    def __init__(self, step: int, what: str = "nan") -> None:
        self.step, self.what = step, what

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        if self.what == "oom":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.1 GiB total)")
        with torch.no_grad():
            pl_module.head.weight.fill_(float("nan"))


class Weights(L.Callback):
    """The module's full state at fit start and at fit end (class attributes), to see what changed."""

    start: dict[str, torch.Tensor] = {}
    end: dict[str, torch.Tensor] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Weights.start = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        Weights.end = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}


class CollectiveLog(L.Callback):
    """Under DDP: every Python-level `torch.distributed.all_reduce` while training (numel per call;
    DDP's own bucketed reducer runs in C++ and is not seen here) and which backbone parameters ever got
    a gradient; written to OUT/collectives<rank>.json at fit end."""

    def __init__(self, path: str) -> None:
        self.path, self.calls, self.with_grad = path, [], set()

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import torch.distributed as dist

        original = dist.all_reduce

        def counting(tensor, *args, **kwargs):
            if trainer.training:
                self.calls.append(int(tensor.numel()))
            return original(tensor, *args, **kwargs)

        dist.all_reduce = counting
        self._restore = lambda: setattr(dist, "all_reduce", original)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.with_grad |= {n for n, p in pl_module.backbone.named_parameters() if p.grad is not None}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import json

        self._restore()
        trainable = {n: p.numel() for n, p in pl_module.backbone.named_parameters() if p.requires_grad}
        with open(f"{self.path}/collectives{trainer.global_rank}.json", "w") as f:
            json.dump({"calls": self.calls, "with_grad": sorted(self.with_grad), "trainable": trainable,
                       "head": sum(p.numel() for p in pl_module.head.parameters())}, f)


class SignalDuringCache(L.Callback):
    """Sends `signal` to this process (only on `rank`, if given) while the frozen-phase feature cache
    reads its `batch`-th batch: a pre-emption in the middle of a phase without training steps."""

    def __init__(self, batch: int = 2, signal: str = "SIGTERM", rank: int | None = None) -> None:
        self.batch, self.signal, self.rank = batch, signal, rank

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        dm, helper = trainer.datamodule, self
        ordered = dm.ordered_loader

        def signalling(split):
            for i, batch in enumerate(ordered(split)):
                if i == helper.batch and helper.rank in (None, trainer.global_rank):
                    print(f"signal sent at {__import__('time').time()}", flush=True)
                    os.kill(os.getpid(), getattr(signal, helper.signal))
                yield batch

        dm.ordered_loader = signalling


def unsynced_freeze_schedule(**options):
    """The freeze schedule without its DDP gradient sync (`sync_frozen_grads=False`): the Lightning/DDP
    failure that tests/e2e/test_ddp.py shows the sync prevents. Not a config option: only this test wants it."""
    from cifar_ft.callbacks.freeze import FreezeSchedule

    return FreezeSchedule(sync_frozen_grads=False, **options)
