"""torchmetrics collections, named `split/metric`."""
from __future__ import annotations

from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
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
