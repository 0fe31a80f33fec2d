"""Which samples each process trains on, so that an optimizer step sees the same samples
whatever the number of processes.

Per epoch the sample order is a permutation keyed by ``(seed, epoch)``. Global step ``s``
covers positions ``[s * G, (s + 1) * G)`` of it (``G`` = global batch); that slice is cut into
``world_size`` equal contiguous shares, and each rank's share into micro-batches of
``micro_batch_size``. Gradients are accumulated over a rank's
``accum_steps = G / (micro_batch_size * world_size)`` micro-batches and averaged over ranks,
so the update equals the one-process update over the same ``G`` samples.

With ``drop_last=False`` the last, partial step is topped up with samples from the start of
the permutation, so every step has exactly ``G`` samples.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


class MicroBatch(NamedTuple):
    """Sample indices of one micro-batch of this rank, the global step it belongs to, and
    whether it is this rank's last micro-batch of that step (the one that syncs gradients)."""

    indices: list[int]
    step: int
    is_last: bool


class GlobalBatchSampler:
    """Micro-batches of one rank for one epoch; :meth:`set_epoch` moves to another epoch."""

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        micro_batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        epoch: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        per_round = micro_batch_size * world_size
        if micro_batch_size < 1 or global_batch_size % per_round:
            lo = max(per_round, global_batch_size // per_round * per_round)
            raise ValueError(
                f"global batch {global_batch_size} is not a multiple of micro-batch {micro_batch_size} x "
                f"{world_size} processes = {per_round}: set train.global_batch_size to a multiple of {per_round} "
                f"(e.g. {lo} or {lo + per_round}) or change train.batch_size_per_device / train.nproc"
            )
        if num_samples < 1:
            raise ValueError("the training set is empty")
        if num_samples < global_batch_size and drop_last:
            raise ValueError(
                f"{num_samples} samples are fewer than one global batch ({global_batch_size}) with drop_last: "
                "lower train.global_batch_size"
            )
        self.num_samples = num_samples
        self.global_batch_size = global_batch_size
        self.micro_batch_size = micro_batch_size
        self.world_size = world_size
        self.rank = rank
        self.seed = seed
        self.epoch = epoch
        self.shuffle = shuffle
        self.accum_steps = global_batch_size // per_round
        self.steps_per_epoch = (
            num_samples // global_batch_size if drop_last else math.ceil(num_samples / global_batch_size)
        )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self) -> np.ndarray:
        """(num_samples,) int64: this epoch's sample order (identical on every rank)."""
        if not self.shuffle:
            return np.arange(self.num_samples, dtype=np.int64)
        return np.random.default_rng([self.seed, self.epoch]).permutation(self.num_samples).astype(np.int64)

    def step_samples(self, step: int, order: np.ndarray | None = None) -> np.ndarray:
        """(G,) the samples of global step ``step`` over all ranks, in rank order."""
        if not 0 <= step < self.steps_per_epoch:
            raise IndexError(f"step {step} is outside 0..{self.steps_per_epoch - 1}")
        order = self.order() if order is None else order
        pos = np.arange(step * self.global_batch_size, (step + 1) * self.global_batch_size) % self.num_samples
        return order[pos]

    def micro_batches(self, step: int, order: np.ndarray | None = None) -> list[list[int]]:
        """This rank's micro-batches of global step ``step``: ``accum_steps`` lists of ``micro_batch_size``."""
        share = self.global_batch_size // self.world_size
        mine = self.step_samples(step, order)[self.rank * share : (self.rank + 1) * share]
        m = self.micro_batch_size
        return [mine[i : i + m].tolist() for i in range(0, share, m)]

    def __iter__(self) -> Iterator[MicroBatch]:
        order = self.order()
        for step in range(self.steps_per_epoch):
            batches = self.micro_batches(step, order)
            for j, indices in enumerate(batches):
                yield MicroBatch(indices, step, j == len(batches) - 1)

    def __len__(self) -> int:
        """Micro-batches per epoch on this rank."""
        return self.steps_per_epoch * self.accum_steps
