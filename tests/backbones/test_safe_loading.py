"""Loading runs no code: code-carrying files are refused in one line; weights files must cover every
backbone tensor; the trust opt-in and .safetensors work."""
from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from cifar_ft.backbones import create_backbone
from cifar_ft.backbones.weights import load_into, load_torch_file
from cifar_ft.errors import ConfigError


class Payload:
    """Pickles as `os.system("touch MARKER")`: what a malicious shared file does on a plain torch.load."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def malicious(path, marker) -> None:
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "payload": Payload(marker)}, path)


def test_a_code_carrying_file_is_refused_in_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "MARKER"
    malicious(tmp_path / "evil.pth", marker)
    with pytest.raises(ConfigError) as info:
        create_backbone("test_resnet", pretrained=str(tmp_path / "evil.pth"))
    msg = str(info.value)
    assert "\n" not in msg and "model.pretrained=" in msg and "evil.pth" in msg and "refused" in msg
    assert "posix.system" in msg and "trust_checkpoint=true" in msg
    assert not marker.exists()
    load_torch_file(tmp_path / "evil.pth", "ckpt_path", trust=True)  # the explicit opt-in loads (and runs it)
    assert marker.exists()


def test_weights_must_cover_every_backbone_tensor(tmp_path):
    src = create_backbone("test_resnet", pretrained=False)
    full = src.state_dict()
    partial = {k: v for k, v in full.items() if not k.startswith("layer4")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ConfigError, match=r"partial.pth.*tensors are not in the file \(e.g. layer4\..*Nothing"):
        create_backbone("test_resnet", pretrained=str(tmp_path / "partial.pth"))
    renamed = {f"encoder.{k}": v for k, v in full.items()}
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ConfigError, match=r"match none \(e.g. encoder\.conv1"):
        create_backbone("test_resnet", pretrained=str(tmp_path / "renamed.pth"))


def test_a_correct_file_loads_every_tensor_also_as_safetensors(tmp_path):
    src = create_backbone("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, tmp_path / "w.safetensors")
    dst = create_backbone("test_resnet", pretrained=False)
    loaded = load_into(dst, tmp_path / "w.safetensors")
    assert loaded == sum(1 for k in src.state_dict() if not k.endswith("num_batches_tracked"))
    for key, value in src.state_dict().items():
        assert torch.equal(value, dst.state_dict()[key]), key
