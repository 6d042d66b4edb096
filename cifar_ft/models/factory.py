"""The model node's `_target_`: from the keys users type (`model.input_size`, ...) to the classifier."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cifar_ft.models.classifier import ImageClassifier
from cifar_ft.models.options import group_options
from cifar_ft.strategies import FinetuningStrategy


def build_classifier(*, num_classes: int, class_names: list[str] | None = None, optimizer: Callable | None = None,
                     scheduler: Callable | None = None, strategy: FinetuningStrategy | dict | None = None,
                     tta: str = "none", trust_weights: bool = False, **model: Any) -> ImageClassifier:
    """The model node (`model.*`, flat, as users type it: `models/config.py`) -> `ImageClassifier` with its
    grouped options (`models/options.py`); the run supplies the classes, optimizer, strategy and the rest."""
    return ImageClassifier(**group_options(model).as_kwargs(), num_classes=num_classes, class_names=class_names,
                           optimizer=optimizer, scheduler=scheduler, strategy=strategy, tta=tta,
                           trust_weights=trust_weights)
