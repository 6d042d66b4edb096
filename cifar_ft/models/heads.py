"""The fresh classifier head: one nn.Linear on the backbone's features, and how it starts."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from cifar_ft.errors import check_choice

# model.head_init -> weight init of the fresh head (its bias starts at zero, except `default`)
HEAD_INITS: dict[str, Callable[[nn.Linear], None]] = {
    "trunc_normal": lambda head: nn.init.trunc_normal_(head.weight, std=0.02),
    "zeros": lambda head: nn.init.zeros_(head.weight),
    "xavier": lambda head: nn.init.xavier_uniform_(head.weight),
    "default": lambda head: None,  # nn.Linear's own (Kaiming-uniform weight and bias)
}


def new_head(num_features: int, num_classes: int, init: str = "trunc_normal") -> nn.Linear:
    """nn.Linear(num_features, num_classes) initialised by `HEAD_INITS[init]`."""
    head = nn.Linear(num_features, num_classes)
    HEAD_INITS[check_choice("model.head_init", init, HEAD_INITS)](head)
    if init != "default":
        nn.init.zeros_(head.bias)
    return head
