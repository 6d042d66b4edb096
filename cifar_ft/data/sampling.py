"""Which images, in which order: seeded stratified splits, and the resumable training order.

Exact resume: a run stopped mid-epoch (SIGTERM, SIGINT, a crash after a step checkpoint) must continue with the
next unseen batch of the same epoch, under the same random state. Lightning stores `state_dict()`
of a training loader that has one in every checkpoint and hands it back on resume; the loader below
records how many batches of which epoch it has yielded, and the sampler skips that many on resume.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from cifar_ft.errors import ConfigError


class EpochShuffleSampler(DistributedSampler):
    """A permutation that is a function of (seed, epoch) only, sharded across DDP ranks.

    It shards itself (rank::world_size of the permutation, padded by repeating its start like
    torch's DistributedSampler), so Lightning leaves it alone instead of wrapping it, and skipping the
    first `skip` indices of this rank's shard skips exactly `skip / batch_size` batches on resume.

    `passes` (data.passes_per_epoch) > 1 makes one epoch that many passes over the images: whole
    permutations drawn one after another from the epoch's generator, the last one cut short (1.5: every
    image once, then a random half again). The first pass is the permutation of `passes=1`. Why not
    `max_epochs=2` with `max_steps`: Lightning validates, checkpoints and names the best checkpoint by
    epoch, and stops mid-epoch without validating; a fractional second look at the images belongs to
    the epoch."""

    def __init__(self, size: int, seed: int, epoch: int = 0, passes: float = 1.0) -> None:
        initialized = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if initialized else (1, 0)
        self.length = max(1, round(size * passes))  # indices per epoch (before DDP padding)
        super().__init__(range(self.length), num_replicas=world, rank=rank, shuffle=True, seed=seed)
        self.size, self.epoch, self.skip = size, epoch, 0

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order: list[int] = []
        while len(order) < self.length:
            order += torch.randperm(self.size, generator=gen).tolist()
        order = order[: self.length]
        order += order[: self.total_size - len(order)]
        shard = order[self.rank:self.total_size:self.num_replicas]
        skip, self.skip = self.skip, 0  # applies to one pass only
        return iter(shard[skip:])


class ResumableLoader(DataLoader):
    """Training loader that remembers its position in the epoch (saved in checkpoints by Lightning).

    Expects an `EpochShuffleSampler` and `drop_last=True`, so batches are fixed slices of the shard."""

    def __init__(self, *args, **kwargs) -> None:
        # Its own generator: starting an epoch's iterator (it draws the worker base seed) must not
        # consume the global RNG, which a mid-epoch resume could not replay.
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(*args, **kwargs)
        self._yielded = 0
        self._resume: tuple[int, int] | None = None

    def __iter__(self) -> Iterator:
        return self._batches()  # a generator: runs after Lightning's `set_epoch`, not at `iter()`

    def _batches(self) -> Iterator:
        if not isinstance(self.sampler, EpochShuffleSampler):  # Lightning swapped it (overfit_batches)
            yield from super().__iter__()
            return
        skip = 0
        if self._resume is not None and self._resume[0] == self.sampler.epoch:
            skip = min(self._resume[1], len(self))
        self._resume = None
        self.sampler.skip = skip * self.batch_size
        self._yielded = skip
        self.generator.manual_seed(self.sampler.seed * 1_000_003 + self.sampler.epoch)  # worker seeds
        for batch in super().__iter__():
            self._yielded += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": int(getattr(self.sampler, "epoch", 0)), "batches": int(self._yielded)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = (int(state["epoch"]), int(state["batches"]))
        self.sampler.set_epoch(int(state["epoch"]))


def stratified_split(labels: torch.Tensor, holdout: int | float, seed: int, key: str = "holdout size"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded split keeping class proportions: returns (keep_idx, holdout_idx), both sorted. `key`: the
    config key that asked for `holdout`, named in the error."""
    n = len(labels)
    count = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 <= count < n:
        raise ConfigError(f"{key}={holdout} is not valid for a set of {n} images; valid: a count in [0, {n}) "
                          "or a fraction in (0, 1)")
    if count == 0:
        return torch.arange(n), torch.empty(0, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    classes, counts = labels.unique(return_counts=True)
    # Largest-remainder apportionment: class shares sum exactly to `count`.
    exact = counts.double() * count / n
    take = exact.floor().long()
    remainder = count - int(take.sum())
    take[torch.argsort(exact - take, descending=True)[:remainder]] += 1
    held = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        idx = (labels == cls).nonzero().flatten()
        held.append(idx[torch.randperm(len(idx), generator=gen)[:k]])
    held_idx = torch.cat(held).sort().values
    mask = torch.ones(n, dtype=torch.bool)
    mask[held_idx] = False
    return mask.nonzero().flatten(), held_idx
