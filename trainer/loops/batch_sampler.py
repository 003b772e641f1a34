"""Real images for GAN training: the global-batch sampler (the same images per step
whatever the number of ranks, resumable mid-epoch) and the loader over it."""

from __future__ import annotations

import signal
from collections import deque
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler


class GlobalBatchSampler(Sampler[list[int]]):
    """Endless per-rank batches of dataset indices, epoch after epoch, resumable mid-epoch.

    The indices are ``DistributedSampler``'s (``shuffle=True``, ``set_epoch``): the order
    of an epoch is ``randperm(n)`` seeded with ``seed + epoch`` and rank ``r`` of ``W``
    takes every ``W``-th index from ``r`` on, so batch ``k`` of every rank together is
    the ``k``-th run of ``batch_size`` indices of the order whatever the number of ranks
    (and the minibatch-stddev groups of D, which stride through a batch the same way,
    hold the same images). Unlike ``DistributedSampler`` it can start at ``offset`` within
    an epoch (exact resume), and ``issued`` records the position after each batch handed
    out, so the loop knows where it is even when a DataLoader prefetches.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        rank: int,
        world_size: int,
        seed: int,
        epoch: int = 0,
        offset: int = 0,
    ) -> None:
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.offset = epoch, offset  # the next batch starts at order[offset]
        self.issued: deque[tuple[int, int]] = deque()

    def set_epoch(self, epoch: int, offset: int = 0) -> None:
        self.epoch, self.offset = epoch, offset

    def __iter__(self) -> Iterator[list[int]]:
        epoch, offset = self.epoch, self.offset
        while True:
            order = torch.randperm(
                self.n, generator=torch.Generator().manual_seed(self.seed + epoch)
            )
            while offset + self.batch_size <= self.n:
                batch = order[offset : offset + self.batch_size]
                offset += self.batch_size
                self.issued.append((epoch, offset))
                yield batch[self.rank :: self.world_size].tolist()
            epoch, offset = epoch + 1, 0  # the incomplete tail of an epoch is dropped


def _ignore_sigterm(_worker_id: int) -> None:
    """DataLoader worker start: leave SIGTERM to the training process. A scheduler, or
    ``pkill -f``, sends it to every process of the job; a worker that died of it would
    crash the loop before it could save ``latest.pt`` (see ``StopOnTerm``). The workers
    still end with the training process (PyTorch's watchdog sees the parent go)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def real_batches(dataset: Any, sampler: GlobalBatchSampler, workers: int) -> Iterator[torch.Tensor]:
    """Image batches ``[B/world, 1, N, N]`` in [-1, 1] in the sampler's order."""
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=False,
        pin_memory=False,
        worker_init_fn=_ignore_sigterm if workers > 0 else None,
    )
    for images, _labels in loader:
        sampler.epoch, sampler.offset = sampler.issued.popleft()  # position after this batch
        yield images
