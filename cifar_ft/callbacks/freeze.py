"""Freeze schedule: the driver of a fine-tuning strategy's phases. The head trains on a frozen backbone,
then the strategy's trainable parameters unfreeze (all at once or gradually); nothing else ever does."""
from __future__ import annotations

import logging

import lightning as L
import torch
import torch.distributed as dist
from lightning.pytorch.callbacks import BaseFinetuning
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from cifar_ft.backbones import layer_groups
from cifar_ft.callbacks import feature_cache
from cifar_ft.callbacks.schedule import UNFREEZE_MODES
from cifar_ft.contracts import FrozenPhaseData
from cifar_ft.errors import ConfigError, check_choice

log = logging.getLogger(__name__)


class FreezeSchedule(BaseFinetuning):
    """Backbone frozen (BatchNorm statistics too) for `freeze_epochs`, then the strategy's trainable
    parameters (`trainable_backbone()`: all of them under `strategy=full`, adapters under `lora`, ...)
    unfrozen; a parameter the strategy does not train is never unfrozen.

    `unfreeze=all` adds them at epoch `freeze_epochs`; `unfreeze=gradual` adds `groups_per_epoch` layer
    groups (timm's `group_matcher`, or regexes in `groups`, restricted to those parameters) per epoch,
    deepest first. New groups join the optimizer at their own peak LR and follow the run's schedule
    with their own warmup. `freeze_epochs=0`: full fine-tuning; `= max_epochs`: linear probing.

    Needs from the LightningModule the `FinetunableModule` contract (cifar_ft.contracts): `backbone`,
    `trainable_backbone()`, `add_backbone_groups(...)`, and `features(x)` for the feature cache. Needs
    from the datamodule the `FrozenPhaseData` contract; without it (a datamodule of your own) frozen epochs simply run
    uncached and augmented. Hooks: `setup` groups the backbone and freezes it; at each train epoch
    start (and at train start, for mid-epoch resumes) the epoch's groups are unfrozen and the data
    mode set; after backward under DDP, gradients of parameters frozen when DDP wrapped the model
    are all-reduced here (DDP does not know them).
    """

    def __init__(self, freeze_epochs: int = 1, unfreeze: str = "all", groups_per_epoch: int = 1,
                 train_bn: bool = False, groups: list[str] | None = None,
                 sync_frozen_grads: bool = True, augment_frozen: bool = False,
                 feature_cache: bool = True, feature_cache_max_gb: float = 4.0) -> None:
        super().__init__()
        if freeze_epochs < 0:
            raise ConfigError(f"callbacks.freeze.freeze_epochs={freeze_epochs} must be >= 0")
        check_choice("callbacks.freeze.unfreeze", unfreeze, UNFREEZE_MODES)
        if groups_per_epoch < 1:
            raise ConfigError(f"callbacks.freeze.groups_per_epoch={groups_per_epoch} must be >= 1")
        self.freeze_epochs, self.unfreeze, self.groups_per_epoch = int(freeze_epochs), unfreeze, int(groups_per_epoch)
        self.train_bn, self.patterns = train_bn, list(groups) if groups else None
        self.sync_frozen_grads = sync_frozen_grads  # false only to demonstrate the DDP failure it fixes
        # Frozen epochs see un-augmented images by default (the usual linear-probe setting), which makes
        # their backbone features constant: computed once, then the head trains on the cache.
        self.augment_frozen, self.feature_cache = augment_frozen, feature_cache
        self.feature_cache_max_gb = feature_cache_max_gb
        self._groups: list[list[str]] = []
        self._eligible: set[str] = set()
        self._unsynced: list[nn.Parameter] = []

    # ---- schedule ------------------------------------------------------------------------
    def groups_trainable_at(self, epoch: int) -> int:
        """How many layer groups (counted from the deep end) train during `epoch`."""
        if epoch < self.freeze_epochs:
            return 0
        return UNFREEZE_MODES[self.unfreeze](len(self._groups), epoch - self.freeze_epochs + 1,
                                             self.groups_per_epoch)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        max_epochs = trainer.max_epochs  # freeze_epochs <= max_epochs: a rule of the config (runs/limits.py)
        backbone = pl_module.backbone
        self._eligible = set(pl_module.trainable_backbone())
        if self.unfreeze == "gradual" or self.patterns:
            groups = layer_groups(backbone, self.patterns)
        else:
            groups = [[n for n, _ in backbone.named_parameters()]]
        self._groups = [kept for kept in ([n for n in g if n in self._eligible] for g in groups) if kept]
        self._warn_if_cut_short(max_epochs)
        super().setup(trainer, pl_module, stage)
        # DDP registers only parameters that require grad when it wraps the model (right after this
        # hook); gradients of anything frozen here must be all-reduced by us once it is unfrozen.
        self._unsynced = [p for p in backbone.parameters() if not p.requires_grad]

    def _warn_if_cut_short(self, max_epochs: int | None) -> None:
        """A gradual schedule longer than the run leaves its input-side groups pretrained: said once, before
        training (the group count is known only here, from the built backbone)."""
        if self.unfreeze != "gradual" or not max_epochs or max_epochs < 1:
            return
        reached, total = self.groups_trainable_at(max_epochs - 1), len(self._groups)
        if reached < total:
            epochs = self.freeze_epochs + -(-total // self.groups_per_epoch)
            log.warning("callbacks.freeze.unfreeze=gradual: only %d of the %d layer groups train by the last epoch "
                        "(trainer.max_epochs=%d, freeze_epochs=%d, groups_per_epoch=%d); the rest stay pretrained. "
                        "For all of them: trainer.max_epochs>=%d, or a larger callbacks.freeze.groups_per_epoch",
                        reached, total, max_epochs, self.freeze_epochs, self.groups_per_epoch, epochs)

    def freeze_before_training(self, pl_module: L.LightningModule) -> None:
        frozen_start = self.freeze_epochs > 0 or self.unfreeze == "gradual"
        for n, p in pl_module.backbone.named_parameters():
            p.requires_grad_(not frozen_start and n in self._eligible)
        self._set_train_modes(pl_module)

    def finetune_function(self, pl_module: L.LightningModule, epoch: int, optimizer: Optimizer) -> None:
        wanted = self.groups_trainable_at(epoch)
        present = {g.get("tag", g.get("name")) for g in optimizer.param_groups}
        params = dict(pl_module.backbone.named_parameters())
        added = []
        for index in reversed(range(len(self._groups) - wanted, len(self._groups))):  # deepest first
            names = self._groups[index]
            for n in names:
                params[n].requires_grad_(True)
            tag = "backbone" if len(self._groups) == 1 else f"backbone.{index}"
            if tag in present or f"{tag}/no_decay" in present:
                continue  # in the optimizer already (from the start, or restored on resume)
            pl_module.add_backbone_groups(optimizer, names, tag, pl_module.trainer.global_step)
            added.append(tag)
        if added:
            self._refresh_schedule(pl_module.trainer)
            peaks = {g["name"]: g["initial_lr"] for g in optimizer.param_groups if g.get("tag") in added}
            rank_zero_info(f"[freeze] epoch {epoch}: unfroze {', '.join(added)} at peak lr "
                           f"{', '.join(f'{v:.3g}' for v in peaks.values())}; trainable params "
                           f"{trainable_params(pl_module):,}")
        self._set_train_modes(pl_module)

    @staticmethod
    def _refresh_schedule(trainer: L.Trainer) -> None:
        for config in trainer.lr_scheduler_configs:
            refresh = getattr(config.scheduler, "refresh", None)
            if refresh is not None:
                refresh()

    def _set_train_modes(self, pl_module: L.LightningModule) -> None:
        """A wholly frozen backbone runs in eval mode (a fixed feature extractor: no dropout or drop
        path); frozen BatchNorm layers keep their running statistics; unfrozen layers train."""
        backbone = pl_module.backbone
        if pl_module.training and not any(p.requires_grad for p in backbone.parameters()):
            backbone.eval()
            if self.train_bn:
                for m in backbone.modules():
                    if isinstance(m, _BatchNorm):
                        m.train()
            return
        if pl_module.training:
            backbone.train()
        if self.train_bn:
            return
        fixed = pl_module.bn_statistics_frozen()  # the strategy keeps the pretrained normalisation
        for m in backbone.modules():
            if isinstance(m, _BatchNorm):
                frozen = fixed or not any(p.requires_grad for p in m.parameters(recurse=False))
                m.train(pl_module.training and not frozen)

    # ---- hooks ---------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A mid-epoch resume skips on_train_epoch_start: re-apply the current epoch's state here, through
        # BaseFinetuning's own epoch hook, which also records the groups added now in this callback's state, so
        # the next resume restores them too (a resumed run that unfroze here, resumed again, needs them)
        BaseFinetuning.on_train_epoch_start(self, trainer, pl_module)
        self._data_mode(trainer, pl_module)

    def _data_mode(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Augmentation off and features cached while frozen (where valid); back to normal after."""
        dm = trainer.datamodule
        if not isinstance(dm, FrozenPhaseData):
            return
        frozen = self.groups_trainable_at(trainer.current_epoch) == 0
        dm.set_augment(self.augment_frozen or not frozen)
        if not frozen or self.augment_frozen or not self.feature_cache or self.train_bn:
            dm.clear_features()
            return
        if feature_cache.cache_bytes(dm, pl_module) > self.feature_cache_max_gb * 1e9:
            rank_zero_info("[freeze] feature cache skipped: larger than callbacks.freeze.feature_cache_max_gb")
            return
        feature_cache.fill(trainer, dm, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._data_mode(trainer, pl_module)
        pl_module.log("train/trainable_params", float(trainable_params(pl_module)),
                      on_step=False, on_epoch=True, sync_dist=False)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._set_train_modes(pl_module)

    def on_after_backward(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.sync_frozen_grads and trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            grads = [p.grad for p in self._unsynced if p.requires_grad and p.grad is not None]
            all_reduce_mean(grads, trainer.world_size)


def all_reduce_mean(grads: list[torch.Tensor], world_size: int) -> None:
    """Average gradients across ranks in one flat bucket per dtype."""
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for same in by_dtype.values():
        flat = torch.cat([g.reshape(-1) for g in same])
        dist.all_reduce(flat)
        flat /= world_size
        offset = 0
        for g in same:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def trainable_params(pl_module: L.LightningModule) -> int:
    return sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
