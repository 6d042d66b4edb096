"""CIFAR through torchvision, offline: a clear error without files, no download with them."""
from __future__ import annotations

import numpy as np
import pytest

from cifar_ft.data.cifar import load_cifar
from cifar_ft.errors import ConfigError


def test_cifar_offline_without_files_says_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"no cifar-10-batches-py/ there and data.download=false"):
        load_cifar("cifar10", str(tmp_path), train=True, download=False)


def test_cifar_from_local_batches_never_downloads(tmp_path, monkeypatch):
    """A fake cifar-10-batches-py in the torchvision format loads offline."""
    import pickle

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 255, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {"label_names": [f"c{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    import torchvision

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "_check_integrity", lambda self: True)  # fake md5s
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    data, names = load_cifar("cifar10", str(tmp_path), train=True, download=True)
    assert data.images.shape == (100, 3, 32, 32) and names[0] == "c0"
