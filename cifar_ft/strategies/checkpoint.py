"""Small checkpoints: what a strategy that freezes the pretrained weights must carry, and nothing more.

A LoRA run on ViT-B/16 trains ~0.3 M of 86 M parameters; its checkpoints hold the trained tensors,
every buffer (BatchNorm statistics: small) and the head, plus `base_weights`: how many tensors were
left out and the SHA-256 of their bytes (names sorted). Loading rebuilds the model from the same
pretrained weights, checks the hash (a one-line error naming both when they differ), and fills the
left-out tensors back in, so resume, eval, predict and export work from a small checkpoint.
"""
from __future__ import annotations

import hashlib

import torch

from cifar_ft.errors import ConfigError

BASE_KEY = "base_weights"


def content_hash(state: dict[str, torch.Tensor], names: list[str]) -> str:
    """SHA-256 over the names and raw bytes of `state[name]` for the sorted `names`."""
    digest = hashlib.sha256()
    for name in sorted(names):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def slim(state: dict[str, torch.Tensor], frozen: list[str]) -> dict[str, torch.Tensor]:
    """`state` without the `frozen` names (keys of the full state dict)."""
    drop = set(frozen)
    return {k: v for k, v in state.items() if k not in drop}


def base_record(frozen: list[str], base_hash: str, pretrained: object) -> dict:
    return {"count": len(frozen), "sha256": base_hash, "pretrained": str(pretrained)}


def check_base(model_state: dict[str, torch.Tensor], record: dict, frozen: list[str], where: str) -> None:
    """The rebuilt model's `frozen` tensors must be the base weights the checkpoint was trained from."""
    if len(frozen) != int(record["count"]):
        raise ConfigError(f"{where}: the checkpoint left out {record['count']} base tensors but this model has "
                          f"{len(frozen)} frozen ones; it was written with another strategy or backbone")
    got = content_hash(model_state, frozen)
    if got != record["sha256"]:
        raise ConfigError(f"{where}: small checkpoint of base weights {record['pretrained']!r} (sha256 "
                          f"{record['sha256'][:12]}), but the rebuilt model's base weights have sha256 {got[:12]}; "
                          "load it with the model.pretrained it was trained from")


def restore(state: dict[str, torch.Tensor], model_state: dict[str, torch.Tensor],
            frozen: list[str]) -> dict[str, torch.Tensor]:
    """`state` with the left-out tensors taken from `model_state` (the rebuilt, checked model)."""
    return {**state, **{k: model_state[k] for k in frozen if k not in state}}
