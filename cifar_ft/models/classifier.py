"""The LightningModule: pretrained backbone + one fresh linear head, AdamW/cosine, torchmetrics."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import ReduceLROnPlateau

from cifar_ft.backbones import check_test_size, create_backbone, feature_width, layer_groups, prefers_channels_last
from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.models import options as opt
from cifar_ft.models.calibration import TTA, apply_temperature
from cifar_ft.models.groups import backbone_groups
from cifar_ft.models.heads import new_head
from cifar_ft.models.metrics import (
    StreamingClassification,
    calibration_metrics,
    classification_metrics,
    confusion_matrix,
    per_class_accuracy,
    unique_sorted_rows,
)
from cifar_ft.models.optim import build_optimizer, join_param_groups, param_groups
from cifar_ft.models.rng import rng_state, set_rng_state
from cifar_ft.models.selection import check_fraction, select
from cifar_ft.strategies import FinetuningStrategy, build_strategy
from cifar_ft.strategies import checkpoint as small

log = logging.getLogger(__name__)


class ImageClassifier(L.LightningModule):
    """`backbone` (features) -> dropout -> `head` (nn.Linear(num_features, num_classes)).

    Options come in groups (`models/options.py`: backbone, inputs, head, training, compiler), each that
    group's dataclass or its plain dict as checkpoints store it; `models.factory.build_classifier` makes
    them from the model node's keys. `trust_weights`: allow a `pretrained` file that needs code to load.
    `optimizer` is a factory called on param groups (each carries its `lr_scale`). `strategy` shapes the
    backbone and names what of it trains; its `spec()` is saved as the `strategy` hyperparameter, so
    checkpoints rebuild it. Implements the `FinetunableModule` contract (cifar_ft.contracts).
    """

    def __init__(self, backbone: opt.BackboneOptions | dict, num_classes: int,
                 inputs: opt.InputOptions | dict | None = None, head: opt.HeadOptions | dict | None = None,
                 training: opt.TrainingOptions | dict | None = None, compiler: opt.CompileOptions | dict | None = None,
                 class_names: list[str] | None = None, optimizer: Callable | None = None,
                 scheduler: Callable | None = None, strategy: FinetuningStrategy | dict | None = None,
                 tta: str = "none", trust_weights: bool = False) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"num_classes={num_classes}: need at least 2 classes")
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for num_classes={num_classes}")
        given = {"backbone": backbone, "inputs": inputs, "head": head, "training": training, "compiler": compiler}
        opts = {name: opt.as_group(name, {} if value is None else value) for name, value in given.items()}
        self.options = opt.ModelGroups(**opts)
        class_names = [str(c) for c in class_names] if class_names is not None else None
        groups = {name: opt.plain_group(g) for name, g in opts.items()}  # plain: loads with weights_only=True
        self.save_hyperparameters({**groups, "num_classes": num_classes, "class_names": class_names, "tta": tta})
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.strategy = build_strategy(strategy)
        self.hparams["strategy"] = self.strategy.spec()  # plain values: rebuilt on load
        net, inp = self.options.backbone, self.options.inputs
        self.backbone = create_backbone(net.name, net.pretrained, net.source, inp.size, net.drop_path_rate,
                                        trust_weights)
        check_test_size(self.backbone, net.name, inp.size, inp.test_size)
        self.strategy.prepare(self.backbone)  # exactly once; checkpoints load into the prepared model
        self._trainable = self.strategy.trainable(self.backbone)
        eligible = set(self._trainable)
        for n, p in self.backbone.named_parameters():
            p.requires_grad_(n in eligible)  # never trains under this strategy, whatever the schedule does
        self._base_hash: str | None = None  # of the frozen base weights (small checkpoints), once
        self.dropout = nn.Dropout(self.options.head.dropout)
        self.head = new_head(feature_width(self.backbone), num_classes, self.options.head.init)
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        self.train_metrics = StreamingClassification(num_classes, "train/")  # no host sync per step
        self.val_metrics = classification_metrics(num_classes, "val")
        self.test_metrics = classification_metrics(num_classes, "test")
        self.test_calibration = calibration_metrics(num_classes, "test")  # of the probabilities tested
        self.test_uncalibrated = calibration_metrics(num_classes, "test", postfix="_uncalibrated")  # before T
        # Temperature scaling (models/calibration.py): 1 = none; fitted after training by calibrate=temperature
        self.register_buffer("temperature", torch.ones((), dtype=torch.float64))
        self.test_per_class = per_class_accuracy(num_classes)
        self.test_confmat = confusion_matrix(num_classes)
        self.confusion, self.test_predictions = None, None  # filled at the end of test (see _gather_test_rows)
        self._test_rows: list[torch.Tensor] = []
        self._calibrated, self._channels_last = False, False  # set in on_test_epoch_start / setup
        self._rng_to_restore: dict | None = None
        self._step = self._logits_and_loss  # compiled in setup() when `compile`
        self._layer_ids: dict[str, int] | None = None  # backbone parameter -> layer group (layer decay)
        check_choice("model.tta", tta, TTA)
        check_fraction(self.options.training.backprop_fraction)

    # ---- forward / loss ------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) -> logits; precomputed features (B, F) go straight to the head."""
        feats = x if x.ndim == 2 else self.features(x)
        return self.head(self.dropout(feats))

    @property
    def input_size(self) -> int:
        return int(self.options.inputs.size)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features (B, F) of a normalised image batch."""
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.backbone(x)

    def loss(self, logits: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, reduction=reduction,  # soft targets (mixup) or labels
                               label_smoothing=self.options.training.label_smoothing)

    def setup(self, stage: str) -> None:
        if self.options.compiler.enabled and stage == "fit":
            # The whole training forward (backbone, head, loss) as one graph. Dynamo guards on each
            # parameter's requires_grad and each module's train/eval mode, so it recompiles exactly
            # when the freeze schedule changes the trainable set (and once for cached features).
            # Parameters stay in this module: checkpoints keep plain keys.
            self._step = torch.compile(self._logits_and_loss, mode=self.options.compiler.mode,
                                       backend=self.options.compiler.backend)
        if self.options.backbone.channels_last and prefers_channels_last(self.backbone):
            self._channels_last = True
            self.backbone.to(memory_format=torch.channels_last)

    def trainable_backbone(self) -> list[str]:
        """The `FinetunableModule` contract: backbone parameter names the strategy trains."""
        return list(self._trainable)

    def bn_statistics_frozen(self) -> bool:
        """The `FinetunableModule` contract: BatchNorm running statistics never update (the strategy's)."""
        return self.strategy.bn_statistics == "frozen"

    def slim_checkpoints(self) -> bool:
        """Small checkpoints: asked for, the strategy never changes the base weights, and those can be
        rebuilt (pretrained weights; a random init cannot be)."""
        return bool(self.options.training.small_checkpoints and self.strategy.freezes_base
                    and self.options.backbone.pretrained is not False)

    def _frozen_keys(self) -> list[str]:
        eligible = set(self._trainable)
        return [f"backbone.{n}" for n, _ in self.backbone.named_parameters() if n not in eligible]

    # ---- resume --------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rng_state"] = rng_state()  # dropout/drop-path draws continue exactly on resume
        if not self.slim_checkpoints():
            return
        frozen = self._frozen_keys()
        if self._base_hash is None:  # the base never changes under this strategy: hashed once
            self._base_hash = small.content_hash(dict(self.named_parameters()), frozen)
        for key in ("state_dict", "current_model_state"):  # the live weights too, under EMA
            if key in checkpoint:
                checkpoint[key] = small.slim(checkpoint[key], frozen)
        checkpoint[small.BASE_KEY] = small.base_record(frozen, self._base_hash, self.options.backbone.pretrained)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._rng_to_restore = checkpoint.get("rng_state")
        for key in ("state_dict", "current_model_state"):  # a checkpoint from before temperature scaling
            checkpoint.get(key, {}).setdefault("temperature", torch.ones((), dtype=torch.float64))
        record = checkpoint.get(small.BASE_KEY)
        if record is None:
            return
        live, frozen = dict(self.state_dict()), self._frozen_keys()
        small.check_base(live, record, frozen, "ckpt_path")
        for key in ("state_dict", "current_model_state"):
            if key in checkpoint:
                checkpoint[key] = small.restore(checkpoint[key], live, frozen)

    def on_train_start(self) -> None:
        # Applied here, after setup and the feature cache, right before the next training batch.
        if self._rng_to_restore is not None:
            set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None

    # ---- steps ---------------------------------------------------------------------------
    def _logits_and_loss(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (logits := self(x)), self.loss(logits, y)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        hard, scored = (y.argmax(-1) if y.ndim == 2 else y), None
        if (fraction := self.options.training.backprop_fraction) < 1:  # selective backprop: train/loss of
            scored, x, y = select(self, self.loss, x, y, fraction)      # the part backpropagated
        logits, loss = self._step(x, y)
        self.train_metrics.update(logits.detach() if scored is None else scored, hard)  # the whole batch
        # read back by the logger on logging steps only; the progress bar shows that value
        self.log("train/loss", loss, on_step=True, on_epoch=False)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True)
        return loss

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())  # summed over ranks by the metric itself
        self.train_metrics.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.val_metrics.update(logits, y)
        self.log("val/loss", self.loss(logits, y), on_epoch=True, sync_dist=True)
        self.log_dict(self.val_metrics, on_epoch=True)

    def tta_log_probs(self, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Log class probabilities (B, C) of images under test-time augmentation `tta` (default: the
        checkpoint's `model.tta`), before temperature scaling."""
        return TTA[check_choice("tta", tta or self.hparams.tta, TTA)](self, x)

    def predict_probs(self, x: torch.Tensor, tta: str | None = None) -> torch.Tensor:
        """Class probabilities (B, C) of images: TTA, then the stored temperature (1: none)."""
        return apply_temperature(self.tta_log_probs(x, tta), self.temperature.float())

    def set_temperature(self, value: float) -> None:
        """The temperature the test, eval, predict and exports apply (1.0: switched off)."""
        if not value > 0:
            raise ConfigError(f"temperature={value} must be > 0")
        self.temperature.fill_(float(value))

    def on_test_epoch_start(self) -> None:
        self._test_rows = []
        self._calibrated = float(self.temperature) != 1.0  # read once, not per batch (a GPU sync)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y, *index = batch
        log_probs = self.tta_log_probs(x)
        probs = apply_temperature(log_probs, self.temperature.float())
        for metric in (self.test_metrics, self.test_calibration, self.test_per_class, self.test_confmat):
            metric.update(probs, y)
        # the smoothed cross-entropy of the (averaged) probabilities, as trained: before temperature
        self.log("test/loss", self.loss(log_probs, y), on_epoch=True, sync_dist=True)
        self.log_dict({**self.test_metrics, **self.test_calibration}, on_epoch=True)
        if self._calibrated:  # the figures before the temperature too
            self.test_uncalibrated.update(log_probs.exp(), y)
            self.log_dict(self.test_uncalibrated, on_epoch=True)
        if index:
            conf, pred = probs.max(-1)
            columns = [index[0], y, pred, conf, probs.gather(1, y[:, None]).squeeze(1)]
            self._test_rows.append(torch.stack([c.double() for c in columns], 1))

    def on_test_epoch_end(self) -> None:
        per_class = self.test_per_class.compute()
        self.log_dict({f"test/acc_class/{n}": v for n, v in zip(self.class_names, per_class)})
        self.confusion = self.test_confmat.compute().cpu()
        self.test_per_class.reset()
        self.test_confmat.reset()
        self.test_predictions = self._gather_test_rows()

    def _gather_test_rows(self) -> torch.Tensor | None:
        """(N, 5) float64 rows: index, label, prediction, its probability, the label's probability;
        from every rank, sorted by index, DDP's padding duplicates dropped."""
        if not self._test_rows:
            return None
        rows = torch.cat(self._test_rows)
        if self.trainer.world_size > 1:  # c10d's own gather: Lightning's goes through a deprecated torch path
            parts = [torch.empty_like(rows) for _ in range(self.trainer.world_size)]
            torch.distributed.all_gather(parts, rows)
            rows = torch.cat(parts)
        return unique_sorted_rows(rows.cpu())

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self.predict_probs(batch[0] if isinstance(batch, (tuple, list)) else batch)

    # ---- optimisation --------------------------------------------------------------------
    def backbone_param_groups(self, names: list[str], tag: str) -> list[dict]:
        """Param groups for the named backbone parameters, tagged `tag` (see `models.groups`)."""
        training = self.options.training
        if self._layer_ids is None and training.layer_decay:
            self._layer_ids = {n: i for i, group in enumerate(layer_groups(self.backbone)) for n in group}
        return backbone_groups(self.backbone, names, tag, self.strategy, training.backbone_lr_mult,
                               training.layer_decay, self._layer_ids)

    def add_backbone_groups(self, optimizer: torch.optim.Optimizer, names: list[str], tag: str,
                            step: int) -> None:
        """The `FinetunableModule` contract: the named backbone parameters join mid-run."""
        join_param_groups(optimizer, self.backbone_param_groups(names, tag), step)

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ConfigError("no optimizer configured (optimizer=adamw|adam|sgd)")
        groups = param_groups(list(self.head.named_parameters()), "head")
        # Only what is trainable now; the freeze callback adds backbone groups when it unfreezes them.
        trainable = [n for n, p in self.backbone.named_parameters() if p.requires_grad]
        groups += self.backbone_param_groups(trainable, "backbone")
        optimizer = build_optimizer(self.optimizer_factory, groups)
        if self.scheduler_factory is None:
            return optimizer
        per_step = "total_steps" in inspect.signature(self.scheduler_factory).parameters
        steps = {"total_steps": self.trainer.estimated_stepping_batches} if per_step else {}
        scheduler = self.scheduler_factory(optimizer, **steps)
        plateau = isinstance(scheduler, ReduceLROnPlateau)
        return {"optimizer": optimizer, "lr_scheduler": {
            "scheduler": scheduler, "interval": "epoch" if plateau else "step",
            "monitor": "val/acc" if plateau else None, "name": "lr"}}
