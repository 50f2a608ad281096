"""A mergeable quantile sketch with bounded memory and deterministic results (a KLL-style
compactor stack).

Level h holds values that each stand for 2**h values of the input. When a level holds more than
`capacity` values it is sorted and every other one (alternating between the odd and the even
positions, so the errors cancel rather than add up) moves one level up. Each compaction of level
h moves a rank by at most 2**h, so over n values the rank error stays below about
`log2(n / capacity) * n / capacity`: with the default capacity of 32,768, under 0.04 % of n for a
billion values, in at most 32,768 values per level. The same values in the same order always
give the same quantiles.
"""

from __future__ import annotations

import numpy as np

CAPACITY = 1 << 15


class QuantileSketch:
    """Approximate quantiles of a stream of numbers."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self.levels: list[np.ndarray] = [np.empty(0)]
        self.offsets: list[int] = [0]
        self.count = 0

    def update(self, values: np.ndarray) -> None:
        """Add values (no NaN)."""
        self.count += len(values)
        self.levels[0] = np.concatenate([self.levels[0], np.asarray(values, dtype=float)])
        level = 0
        while len(self.levels[level]) > self.capacity:
            ordered = np.sort(self.levels[level])
            kept = len(ordered) - len(ordered) % 2
            if level + 1 == len(self.levels):
                self.levels.append(np.empty(0))
                self.offsets.append(0)
            promoted = ordered[self.offsets[level] : kept : 2]
            self.offsets[level] ^= 1
            self.levels[level + 1] = np.concatenate([self.levels[level + 1], promoted])
            self.levels[level] = ordered[kept:]
            level += 1

    def quantiles(self, probabilities: np.ndarray) -> np.ndarray:
        """The values at these probabilities (nearest rank); NaN when nothing was added."""
        if not self.count:
            return np.full(len(probabilities), np.nan)
        values = np.concatenate(self.levels)
        weights = np.concatenate(
            [np.full(len(level), 2.0**h) for h, level in enumerate(self.levels)]
        )
        order = np.argsort(values, kind="stable")
        values, cumulative = values[order], np.cumsum(weights[order])
        ranks = np.asarray(probabilities) * (cumulative[-1] - 1)
        positions = np.searchsorted(cumulative, ranks, side="right")
        found: np.ndarray = values[np.minimum(positions, len(values) - 1)]
        return found
