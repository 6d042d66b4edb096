"""Counting what each training step costs beyond compute: host reads of device values (each one a
host-device sync on a GPU) and Python-level collectives, attributed to the step they happen in.

A step is one call of Lightning's `_TrainingEpochLoop.advance` (fetch the batch, the batch-start
hooks, forward, backward, optimizer step, the batch-end hooks, logging). What happens at an epoch's
start or end outside it (validation, checkpoints, the feature cache) is not counted. DDP's own
gradient all-reduce runs in its C++ reducer and is not a Python call, so it is not counted either.
"""
from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop

HOST_READS = ("item", "tolist", "cpu", "numpy", "__float__", "__int__", "__bool__", "__index__")
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_into_tensor", "all_gather_object", "broadcast",
               "broadcast_object_list", "reduce", "reduce_scatter_tensor", "gather", "scatter", "barrier")


@dataclass
class Step:
    epoch: int
    batch: int            # index in the epoch
    global_step: int      # optimizer steps taken before this one
    batches: int          # batches in the epoch
    log_every: int
    calls: Counter = field(default_factory=Counter)
    sizes: list[int] = field(default_factory=list)  # numel of each collective's tensor

    @property
    def periodic(self) -> bool:
        """A logging step, or the first or last batch of its epoch."""
        return (self.global_step + 1) % self.log_every == 0 or self.batch == 0 or self.batch + 1 >= self.batches


class StepProbe:
    """`with StepProbe("host_reads") as probe: train(cfg)`; then `probe.steps` (one `Step` each)."""

    def __init__(self, kind: str) -> None:
        self.kind, self.steps, self._current, self._undo = kind, [], None, []

    def __enter__(self) -> StepProbe:
        self._patch(_TrainingEpochLoop, "advance", self._around_step)
        if self.kind == "host_reads":
            for name in HOST_READS:
                self._patch(torch.Tensor, name, self._counting(name))
        else:
            for name in COLLECTIVES:
                self._patch(dist, name, self._counting(name))
        return self

    def __exit__(self, *exc) -> None:
        for owner, name, original, had in reversed(self._undo):
            if had:
                setattr(owner, name, original)
            else:
                delattr(owner, name)

    def _patch(self, owner: object, name: str, make) -> None:
        original = getattr(owner, name)
        self._undo.append((owner, name, original, name in vars(owner)))
        setattr(owner, name, make(original))

    def _around_step(self, original):
        probe = self

        @functools.wraps(original)
        def advance(loop, *args, **kwargs):
            trainer = loop.trainer
            probe._current = Step(trainer.current_epoch, loop.batch_progress.current.ready, trainer.global_step,
                                  trainer.num_training_batches, max(1, trainer.log_every_n_steps))
            try:
                return original(loop, *args, **kwargs)
            finally:
                probe.steps.append(probe._current)
                probe._current = None
        return advance

    def _counting(self, name: str):
        probe = self

        def wrap(original):
            @functools.wraps(original)
            def counted(*args, **kwargs):
                if probe._current is not None:
                    probe._current.calls[name] += 1
                    if args and isinstance(args[0], torch.Tensor) and probe.kind == "collectives":
                        probe._current.sizes.append(args[0].numel())
                return original(*args, **kwargs)
            return counted
        return wrap
