"""torchmetrics collections, named `split/metric`."""
from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)


def classification_metrics(num_classes: int, split: str) -> MetricCollection:
    """Top-1/top-5 accuracy (micro) and macro precision/recall/F1 under `split/`."""
    # validate_args=False: the checks read values back from the GPU, a sync on every training step.
    kw = {"validate_args": False}
    metrics = {
        "acc": MulticlassAccuracy(num_classes, average="micro", **kw),
        "precision_macro": MulticlassPrecision(num_classes, average="macro", **kw),
        "recall_macro": MulticlassRecall(num_classes, average="macro", **kw),
        "f1_macro": MulticlassF1Score(num_classes, average="macro", **kw),
    }
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro", **kw)
    return MetricCollection(metrics, prefix=f"{split}/")


def per_class_accuracy(num_classes: int) -> MulticlassAccuracy:
    return MulticlassAccuracy(num_classes, average=None)


def confusion_matrix(num_classes: int) -> MulticlassConfusionMatrix:
    return MulticlassConfusionMatrix(num_classes)


class StreamingClassification(Metric):
    """Top-1 (and top-5) accuracy and macro precision/recall/F1 of the training batches, from a
    confusion matrix accumulated on the device; computed (and summed over DDP ranks) once per epoch.

    Not torchmetrics' Multiclass* metrics in the training step: their update counts with
    `torch.bincount`, which on a GPU reads the input's maximum back to the host, a sync every step.
    This update is an `index_put_` with accumulation (no host read). The definitions are
    torchmetrics' (macro averages skip classes absent from both targets and predictions)."""

    full_state_update = False

    def __init__(self, num_classes: int, prefix: str) -> None:
        super().__init__()
        self.num_classes, self.prefix = int(num_classes), prefix
        self.add_state("confmat", torch.zeros(num_classes, num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("top5", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        cell = target * self.num_classes + logits.argmax(-1)
        self.confmat.view(-1).index_put_((cell,), torch.ones_like(cell), accumulate=True)
        if self.num_classes > 5:
            self.top5 += (logits.topk(5, dim=-1).indices == target[:, None]).any(-1).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        cm = self.confmat.double()
        tp, support, predicted, total = cm.diag(), cm.sum(1), cm.sum(0), cm.sum().clamp_min(1)
        precision, recall = tp / predicted.clamp_min(1), tp / support.clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        present = (support + predicted) > 0
        n = present.sum().clamp_min(1)
        out = {"acc": tp.sum() / total, "precision_macro": precision[present].sum() / n,
               "recall_macro": recall[present].sum() / n, "f1_macro": f1[present].sum() / n}
        if self.num_classes > 5:
            out["acc_top5"] = self.top5 / total
        return {f"{self.prefix}{k}": v.float() for k, v in out.items()}


class _MeanScore(Metric):
    """Mean over images of a per-image score of class probabilities; summed over DDP ranks."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def score(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        self.total += self.score(probs.double(), target).sum()
        self.count += target.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp_min(1)).float()


class NegativeLogLikelihood(_MeanScore):
    """-log p(true class), without label smoothing (test/loss uses the training loss's smoothing).
    Probabilities are clamped at 1e-12, so one confident mistake counts 27.6 nats, not infinity."""

    def score(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return -probs.gather(1, target[:, None]).squeeze(1).clamp_min(1e-12).log()


class BrierScore(_MeanScore):
    """Sum over classes of (p - one_hot)^2 (Brier, 1950; in [0, 2]); torchmetrics has no multiclass one."""

    def score(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(target, probs.shape[1]).to(probs.dtype)
        return (probs - one_hot).pow(2).sum(1)


def calibration_metrics(num_classes: int, split: str, bins: int = 15, postfix: str = "") -> MetricCollection:
    """ECE and MCE over `bins` equal-width confidence bins (torchmetrics' MulticlassCalibrationError,
    the top-1 definition of Guo et al., 2017), NLL and Brier score, of class probabilities, named
    `split/<name><postfix>`."""
    kw = {"num_classes": num_classes, "n_bins": bins, "validate_args": False}
    return MetricCollection({"ece": MulticlassCalibrationError(norm="l1", **kw),
                             "mce": MulticlassCalibrationError(norm="max", **kw),
                             "nll": NegativeLogLikelihood(), "brier": BrierScore()}, prefix=f"{split}/",
                            postfix=postfix or None)


def unique_sorted_rows(rows: torch.Tensor) -> torch.Tensor:
    """Rows sorted by their first column (an image index), each index once: a DistributedSampler pads
    the last ranks with repeats of the first images."""
    rows = rows[rows[:, 0].argsort(stable=True)]
    keep = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
    keep[1:] = rows[1:, 0] != rows[:-1, 0]
    return rows[keep]
