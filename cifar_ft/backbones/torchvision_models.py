"""`model.source=torchvision`: torchvision's ResNets with their ImageNet weights, headless.

Add one: its block type and layer counts in `ARCHS` (torchvision's own weights are found by name).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from cifar_ft.backbones.offline import host_reachable
from cifar_ft.errors import ConfigError

ARCHS: dict[str, tuple[type[nn.Module], list[int]]] = {
    "resnet18": (BasicBlock, [2, 2, 2, 2]),
    "resnet50": (Bottleneck, [3, 4, 6, 3]),
}
# torchvision's ResNets use timm's parameter names, so timm's ResNet matcher applies unchanged.
RESNET_GROUP_MATCHER = {"stem": r"^conv1|bn1|maxpool", "blocks": r"^layer(\d+)\.(\d+)"}


class HeadlessResNet(ResNet):
    """torchvision's ResNet without `fc` (pooled features out), with timm's `num_features` and
    `group_matcher`; parameter names are torchvision's (`conv1.weight`, `layer1.0...`)."""

    def __init__(self, block: type[nn.Module], layers: list[int]) -> None:
        super().__init__(block, layers)
        self.num_features = self.fc.in_features
        self.fc = nn.Identity()

    def group_matcher(self, coarse: bool = False) -> dict[str, str]:
        return RESNET_GROUP_MATCHER


def check_name(name: str) -> None:
    if name not in ARCHS:
        raise ConfigError(f"model.backbone={name!r} with model.source=torchvision; valid: "
                          f"{', '.join(ARCHS)} (any other model: model.source=timm)")


def create(name: str, pretrained: bool, input_size: int | None = None, drop_path_rate: float = 0.0) -> nn.Module:
    model = HeadlessResNet(*ARCHS[name])
    if pretrained:
        state = _imagenet_weights(name)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=True)
    return model


def _imagenet_weights(name: str) -> dict[str, torch.Tensor]:
    """torchvision's DEFAULT ImageNet weights for `name`, from the torch hub cache or downloaded."""
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not cached.exists() and not host_reachable("download.pytorch.org"):
        raise ConfigError(f"model.backbone={name!r} (torchvision): weights {cached.name} are not in "
                          f"{cached.parent} and download.pytorch.org is unreachable. Copy the file "
                          f"there (TORCH_HOME moves it) or pass model.pretrained=/path/to/{cached.name}")
    return weights.get_state_dict(progress=True, check_hash=True, weights_only=True)
