"""Deterministic mixed batches: a positive-only pool and a temporal pool at a set ratio.

The global batch of step ``s`` is a pure function of ``(seed, s)``: each pool is read as an endless stream
of per-epoch permutations (epoch ``e`` of pool ``p`` is ``default_rng([seed, p, e]).permutation(N)``), and
step ``s`` takes positions ``[s·k, (s+1)·k)`` of that stream, ``k`` being the pool's share of the batch. So
within an epoch no item repeats, and a resumed run (or a run on more processes) sees exactly the same
items in the same order as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from basekit.errors import UserError

POSITIVE, TEMPORAL = 0, 1


def seed_for(*parts: int) -> int:
    """A 32-bit seed derived from integer parts, e.g. ``(seed, purpose, step, rank)`` (``SeedSequence``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


@dataclass(frozen=True)
class BatchItem:
    pool: int  # POSITIVE or TEMPORAL
    index: int  # index into that pool


class _PoolStream:
    def __init__(self, size: int, seed: int, pool_id: int):
        self.size, self.seed, self.pool_id = size, seed, pool_id
        self._epoch, self._perm = -1, None

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, self.pool_id, epoch]).permutation(self.size)
            self._epoch = epoch
        return self._perm

    def take(self, start: int, count: int) -> list[int]:
        out = []
        for pos in range(start, start + count):
            out.append(int(self._permutation(pos // self.size)[pos % self.size]))
        return out


class MixedBatchSampler:
    """Draws global batches of ``batch_size`` items, ``round(batch_size · temporal_fraction)`` temporal.

    Args:
        n_positive: size of the positive-only pool (0 when none was given).
        n_temporal: size of the temporal pool (items with a negative caption).
        batch_size: global batch size (all processes together).
        temporal_fraction: share of temporal items when both pools exist.
        seed: the run's seed.
    """

    def __init__(self, n_positive: int, n_temporal: int, batch_size: int, temporal_fraction: float, seed: int):
        if n_positive == 0 and n_temporal == 0:
            raise UserError("no training items: every manifest was empty or every item was skipped")
        if n_positive == 0:
            k_t = batch_size
        elif n_temporal == 0:
            k_t = 0
        else:
            k_t = int(round(batch_size * temporal_fraction))
        self.k_temporal, self.k_positive = k_t, batch_size - k_t
        self.batch_size, self.seed = batch_size, seed
        self._pos = _PoolStream(n_positive, seed, POSITIVE) if self.k_positive else None
        self._tmp = _PoolStream(n_temporal, seed, TEMPORAL) if self.k_temporal else None

    def batch(self, step: int) -> list[BatchItem]:
        """The global batch of ``step`` (0-based micro-step), shuffled so each process's share is mixed."""
        items = []
        if self._tmp is not None:
            items += [BatchItem(TEMPORAL, i) for i in self._tmp.take(step * self.k_temporal, self.k_temporal)]
        if self._pos is not None:
            items += [BatchItem(POSITIVE, i) for i in self._pos.take(step * self.k_positive, self.k_positive)]
        order = np.random.default_rng([self.seed, 2, step]).permutation(len(items))
        return [items[i] for i in order]

    @staticmethod
    def shard(items: list, rank: int, world: int) -> list:
        """This process's contiguous share of a global batch (the batch size must divide evenly)."""
        if len(items) % world:
            raise UserError(f"--batch-size {len(items)} must be divisible by the number of processes ({world})")
        n = len(items) // world
        return items[rank * n:(rank + 1) * n]
