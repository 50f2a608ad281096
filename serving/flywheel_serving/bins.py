"""Binning on the training baseline: numeric edges and categorical top values.

A numeric value falls in position 0 (underflow, below the first edge), 1..B (bin i holds
`edges[i-1] <= x < edges[i]`, the last bin also holds the last edge) or B+1 (overflow): the
positions of the baseline's `histogram.counts` (docs/stats-format.md); a missing value (NaN) in
`null`. Counting is vectorised: sort, then one `searchsorted` of all edges (see
`NumericBins.count`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel_serving.names import NUMERIC_NULL, categorical_slots


@dataclass
class NumericBins:
    """Edges of numeric features, as one sorted array of complex keys for vectorised counting."""

    names: list[str]
    bounds: np.ndarray[Any, Any]  # per feature j: j - inf·i, its edges as j + edge·i, j+1 - inf·i
    feature_index: np.ndarray[Any, Any]  # 0..features-1, as a column
    sizes: np.ndarray[Any, Any]  # edges per feature
    slots: int

    @classmethod
    def build(cls, features: Sequence[tuple[str, list[float]]]) -> NumericBins:
        """From (name, edges) pairs; each feature gets len(edges) + 1 positions plus null."""
        # Values arrive as float32 (the model's input type), edges were computed on float64
        # data: compare in float32, or a value equal to an edge (ties are common in real data,
        # e.g. 0.2 as a quantile) rounds up past it and lands one bin too high. The last edge
        # moves to the next float32 up: `x <= last` then sorts below it.
        top = np.float32(np.inf)
        shifted = [
            [*(float(np.float32(x)) for x in e[:-1]), float(np.nextafter(np.float32(e[-1]), top))]
            for _, e in features
        ]
        bounds = np.array(
            [
                key
                for j, e in enumerate(shifted)
                for key in (
                    complex(j, -np.inf),
                    *(complex(j, x) for x in e),
                    complex(j + 1, -np.inf),
                )
            ],
            dtype=np.complex128,
        )
        sizes = np.array([len(e) for _, e in features], dtype=np.int64)
        width = sizes + 2  # positions 0..len(edges) and null
        index = np.arange(len(features), dtype=np.float64).reshape(-1, 1)
        names = [n for n, _ in features]
        return cls(names, bounds, index, sizes, int(width.sum()))

    def count(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Counts per slot of a batch (rows x features); a NaN counts in its feature's null slot.

        Counts, not positions: each feature's values are sorted and laid out as complex keys
        j + x·i, which numpy orders by real part, then imaginary part, so the whole batch is one
        sorted array. One `searchsorted` of `self.bounds` (built once: per feature its start, its
        edges and its end) into it tells how many values lie below each bound; the differences
        of consecutive bounds are the counts of positions 0..B+1, and the difference from one
        feature's end to the next one's start is the null slot's 0. A few hundred predictable
        searches instead of a branchy search per value. The last edge is stored as the next
        float up, so a value equal to it lands in the last bin.

        NaN: a complex key with a NaN imaginary part sorts after every other key whatever its
        real part, which would break the array's order. Sorting puts a feature's NaNs last in
        its row, so one look at the last column says whether there are any (free when there
        are none); if so they are counted per feature, laid out as +inf (overflow, where
        nothing can sort past the feature's end) and moved from overflow to null afterwards.
        """
        ordered = np.sort(values.T, axis=1)
        nulls = None
        if ordered.shape[1] and np.isnan(ordered[:, -1]).any():
            missing = np.isnan(ordered)
            nulls = missing.sum(axis=1)
            ordered[missing] = np.inf
        batch = np.empty(ordered.shape, dtype=np.complex128)
        batch.real = self.feature_index
        batch.imag = ordered
        below = np.searchsorted(batch.ravel(), self.bounds, side="left")
        counts = np.empty(self.slots, dtype=np.int64)
        np.subtract(below[1:], below[:-1], out=counts[:-1])
        counts[-1] = 0
        if nulls is not None:
            null_slots = np.cumsum(self.sizes + 2) - 1
            counts[null_slots - 1] -= nulls
            counts[null_slots] = nulls
        return counts

    def labels(self) -> list[tuple[str, str]]:
        """(feature, bin) of every slot, in slot order."""
        return [
            (name, str(position) if position <= size else NUMERIC_NULL)
            for name, size in zip(self.names, self.sizes.tolist(), strict=True)
            for position in range(size + 2)
        ]


@dataclass
class CategoricalBins:
    """The slots of one categorical feature: top values, `__other__`, `__unseen__`, `__null__`."""

    name: str
    index: dict[str, int]
    other: set[str]
    labels: list[str] = field(default_factory=list)

    @classmethod
    def build(cls, name: str, top: list[str], others: Iterable[str]) -> CategoricalBins:
        """Top categories first, then `__other__`, `__unseen__`, `__null__`."""
        labels = categorical_slots(top)
        return cls(name, {v: i for i, v in enumerate(top)}, set(others), labels)

    def position(self, value: object) -> int:
        """The slot of one value."""
        if value is None:
            return len(self.labels) - 1
        text = str(value)
        found = self.index.get(text)
        if found is not None:
            return found
        return len(self.labels) - 3 if text in self.other else len(self.labels) - 2
