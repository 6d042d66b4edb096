"""`vpt`: visual prompt tuning for timm Vision Transformers (Jia et al., "Visual Prompt Tuning", ECCV
2022). `tokens` learnable prompt tokens are inserted after the class token; `deep=false` (VPT-shallow)
adds them once, before the first block; `deep=true` (VPT-deep) gives every block its own prompts,
replacing the previous block's prompt outputs. The backbone stays frozen; prompts and head train.

Ours, because peft's prompt methods target language models and have no timm ViT support. The
prompts are excluded from pooling (timm's `num_prefix_tokens` grows by `tokens`), initialised
uniformly in +-sqrt(6 / (3 * patch_area + dim)) as in the paper's code, and get no weight decay.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cifar_ft.errors import ConfigError
from cifar_ft.strategies.base import Strategy


class PromptedBlocks(nn.Sequential):
    """timm's `blocks` (same children, same names) with prompt tokens inserted before block 0 (and
    replaced before every later block when `deep`)."""

    def __init__(self, blocks: nn.Sequential, dim: int, tokens: int, deep: bool, prefix: int,
                 patch_area: int, dropout: float) -> None:
        super().__init__(*blocks)
        bound = math.sqrt(6.0 / (3 * patch_area + dim))
        self.prompt = nn.Parameter(torch.empty(len(blocks) if deep else 1, tokens, dim).uniform_(-bound, bound))
        self.deep, self.prefix, self.tokens, self.dropout = deep, prefix, tokens, dropout

    def _prompt(self, i: int, batch: int) -> torch.Tensor:
        prompt = F.dropout(self.prompt[i], self.dropout, self.training)
        return prompt.unsqueeze(0).expand(batch, -1, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self):
            if i == 0:
                x = torch.cat([x[:, :self.prefix], self._prompt(0, x.shape[0]).to(x.dtype), x[:, self.prefix:]], 1)
            elif self.deep:
                rest = x[:, self.prefix + self.tokens:]
                x = torch.cat([x[:, :self.prefix], self._prompt(i, x.shape[0]).to(x.dtype), rest], 1)
            x = block(x)
        return x


class VPT(Strategy):
    """`tokens` prompt tokens (per block when `deep`), trained at `lr_mult` x the base LR."""

    freezes_base = True
    bn_statistics = "frozen"

    def __init__(self, name: str = "vpt", tokens: int = 10, deep: bool = True, dropout: float = 0.0,
                 lr_mult: float | None = 1.0) -> None:
        super().__init__(name)
        if int(tokens) < 1:
            raise ConfigError(f"strategy.tokens={tokens} must be >= 1")
        self.tokens, self.deep, self.dropout, self.lr_mult = int(tokens), bool(deep), float(dropout), lr_mult
        self._args = {"tokens": self.tokens, "deep": self.deep, "dropout": self.dropout, "lr_mult": lr_mult}

    def prepare(self, backbone: nn.Module) -> None:
        blocks = getattr(backbone, "blocks", None)
        if not isinstance(blocks, nn.Sequential) or not hasattr(backbone, "num_prefix_tokens"):
            raise ConfigError(f"strategy={self.name} needs a timm Vision Transformer (blocks + class token); "
                              f"model.backbone is a {type(backbone).__name__}")
        patch = getattr(getattr(backbone, "patch_embed", None), "patch_size", (16, 16))
        backbone.blocks = PromptedBlocks(blocks, backbone.embed_dim, self.tokens, self.deep,
                                         backbone.num_prefix_tokens, patch[0] * patch[1], self.dropout)
        backbone.num_prefix_tokens += self.tokens  # pooling skips class token and prompts

    def trainable(self, backbone: nn.Module) -> list[str]:
        return ["blocks.prompt"]

    def lr_scale(self, name: str) -> float | None:
        return self.lr_mult

    def no_weight_decay(self, backbone: nn.Module) -> set[str]:
        return {"blocks.prompt"}

    def merged(self, backbone: nn.Module) -> nn.Module:
        raise ConfigError(f"strategy={self.name}: prompts change the architecture, so there is no plain timm "
                          "model to export; use format=onnx or format=torch_export")
