"""Names a data config chooses among, in a module light to import: the config checks that run before a
command starts (no Lightning, no torchvision) read them."""
from __future__ import annotations

# data.dataset -> torchvision dataset class name (data=cifar10|cifar100)
DATASETS = {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}
