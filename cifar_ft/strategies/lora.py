"""`lora` and `dora`: low-rank adapters injected by Hugging Face `peft` (Hu et al., ICLR 2022; DoRA:
Liu et al., ICML 2024). The pretrained weights stay frozen; each adapted layer W gets W + (alpha/r) B A,
B zero-initialised, so training starts from the pretrained model exactly.

Which layers are adapted: `targets` names an entry of `LORA_TARGETS` (`auto` picks by the backbone's
kind), or `target_regex` selects modules of any timm model by name (re.search). peft's
`inject_adapter_in_model` adds the adapters in place, so parameter names keep timm's layout
(`blocks.3.attn.qkv.lora_A.default.weight`, the base weight under `...qkv.base_layer.weight`) and timm's
layer groups, layer decay and the freeze schedule apply unchanged.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable

from torch import nn

from cifar_ft.errors import ConfigError, check_choice
from cifar_ft.strategies.base import Strategy

TRANSFORMER_LAYERS = ("qkv", "proj", "fc1", "fc2")


def attention_mlp(backbone: nn.Module) -> list[str]:
    """ViT/DeiT: every block's attention (qkv, output proj) and MLP (fc1, fc2) linear layers."""
    return [n for n, m in backbone.named_modules()
            if isinstance(m, nn.Linear) and n.startswith("blocks.") and n.split(".")[-1] in TRANSFORMER_LAYERS]


def pointwise(backbone: nn.Module) -> list[str]:
    """ConvNets: the pointwise (1x1, ungrouped) convolutions, where most of their weights are."""
    return [n for n, m in backbone.named_modules()
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1]


def auto(backbone: nn.Module) -> list[str]:
    return attention_mlp(backbone) or pointwise(backbone)


# strategy.targets -> the modules of a backbone that get adapters
LORA_TARGETS: dict[str, Callable[[nn.Module], list[str]]] = {
    "auto": auto, "attention_mlp": attention_mlp, "pointwise": pointwise,
}


class LoRA(Strategy):
    """Low-rank adapters of rank `rank` and scale `alpha / rank` (DoRA with `use_dora`), dropout
    `dropout` on their input; they train at `lr_mult` x the base LR (default 1: like the head)."""

    freezes_base = True
    bn_statistics = "frozen"

    def __init__(self, name: str = "lora", rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 targets: str = "auto", target_regex: str | None = None, use_dora: bool = False,
                 lr_mult: float | None = 1.0) -> None:
        super().__init__(name)
        if int(rank) < 1:
            raise ConfigError(f"strategy.rank={rank} must be >= 1")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"strategy.dropout={dropout} must be in [0, 1)")
        check_choice("strategy.targets", targets, LORA_TARGETS)
        if target_regex is not None:
            try:
                re.compile(target_regex)
            except re.error as err:
                raise ConfigError(f"strategy.target_regex={target_regex!r} is not a valid regex: {err}") from None
        self.rank, self.alpha, self.dropout, self.use_dora = int(rank), float(alpha), float(dropout), bool(use_dora)
        self.targets, self.target_regex, self.lr_mult = targets, target_regex, lr_mult
        self._args = {"rank": self.rank, "alpha": self.alpha, "dropout": self.dropout, "targets": targets,
                      "target_regex": target_regex, "use_dora": self.use_dora, "lr_mult": lr_mult}
        self.modules: list[str] = []

    def target_modules(self, backbone: nn.Module) -> list[str]:
        if self.target_regex is not None:
            found = [n for n, m in backbone.named_modules()
                     if n and re.search(self.target_regex, n) and isinstance(m, (nn.Linear, nn.Conv2d))]
        else:
            found = LORA_TARGETS[self.targets](backbone)
        if not found:
            what = f"target_regex={self.target_regex!r}" if self.target_regex else f"targets={self.targets}"
            raise ConfigError(f"strategy={self.name}: {what} selects no Linear/Conv2d layer of this backbone "
                              f"(modules look like {[n for n, _ in backbone.named_modules()][1:4]})")
        return found

    def peft_config(self, modules_to_save: list[str] | None = None):
        """The peft LoraConfig of these adapters (after `prepare`)."""
        from peft import LoraConfig

        return LoraConfig(r=self.rank, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=list(self.modules), use_dora=self.use_dora, bias="none",
                          modules_to_save=modules_to_save)

    def prepare(self, backbone: nn.Module) -> None:
        try:
            from peft import inject_adapter_in_model
        except ImportError as err:
            raise ConfigError(f"strategy={self.name} needs peft: pip install -e '.[peft]'") from err
        self.modules = self.target_modules(backbone)
        self.check_rank(backbone)
        inject_adapter_in_model(self.peft_config(), backbone)

    def check_rank(self, backbone: nn.Module) -> None:
        """A rank above a layer's width adds no capacity, only memory (rank 200,000 on a 64-wide model: 4 GB
        and a 2 GB "small" checkpoint): refused before any adapter is allocated."""
        widths = {}
        for name in self.modules:
            layer = backbone.get_submodule(name)
            shape = (layer.in_features, layer.out_features) if isinstance(layer, nn.Linear) else \
                (layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1], layer.out_channels)
            widths[name] = min(shape)
        narrowest = min(widths, key=widths.get)
        if self.rank > widths[narrowest]:
            raise ConfigError(f"strategy.rank={self.rank} is larger than the adapted layer {narrowest} is wide "
                              f"({widths[narrowest]}: a rank above min(in, out) adds nothing); valid: 1 to "
                              f"{widths[narrowest]} for this backbone, or strategy.target_regex=... for wider layers")

    def trainable(self, backbone: nn.Module) -> list[str]:
        return [n for n, _ in backbone.named_parameters() if ".lora_" in n]

    def lr_scale(self, name: str) -> float | None:
        return self.lr_mult

    def merged(self, backbone: nn.Module) -> nn.Module:
        """A copy with every adapter folded into its base layer (peft's `merge`), base layers back in
        place: timm's own architecture and names."""
        return unload(backbone, merge=True)

    def base(self, backbone: nn.Module) -> nn.Module:
        """A copy without the adapters: the pretrained weights they were trained on."""
        return unload(backbone, merge=False)


def unload(backbone: nn.Module, merge: bool) -> nn.Module:
    """peft's unload on a copy of a model with injected adapters (no PeftModel wrapper needed): each
    adapted layer is replaced by its base layer, with the adapter merged into it when `merge`."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    net = copy.deepcopy(backbone)
    layers = [(n, m) for n, m in net.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in layers:
        if merge:
            layer.merge()
        parent, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent), child, layer.get_base_layer())
    return net
