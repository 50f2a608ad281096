"""Binning on the training baseline: numeric edges and categorical top values.

A numeric value falls in position 0 (underflow, below the first edge), 1..B (bin i holds
`edges[i-1] <= x < edges[i]`, the last bin also holds the last edge) or B+1 (overflow): the
positions of the baseline's `histogram.counts` (docs/stats-format.md); a missing value in `null`.
Two ways to count, same result: a vectorised one (one `searchsorted` for all features) for large
batches, and `bisect` over Python lists for a few rows, where numpy's per-call cost dominates.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

OTHER, UNSEEN, NULL = "__other__", "__unseen__", "__null__"


@dataclass
class NumericBins:
    """Edges of numeric features, padded into one matrix for vectorised binning."""

    names: list[str]
    keys: np.ndarray[Any, Any]  # every feature's edges as complex j + edge·i, sorted
    shift: np.ndarray[Any, Any]  # per feature: its slots' start minus its edges' start in keys
    feature_index: np.ndarray[Any, Any]  # 0..features-1
    sizes: np.ndarray[Any, Any]  # edges per feature
    slots: int
    plan: list[tuple[list[float], int, int]] = field(default_factory=list)

    @classmethod
    def build(cls, features: Sequence[tuple[str, list[float]]]) -> NumericBins:
        """From (name, edges) pairs; each feature gets len(edges) + 1 positions plus null."""
        # The last edge moves to the next float up: `x <= last` then sorts below it.
        shifted = [[*e[:-1], float(np.nextafter(e[-1], np.inf))] for _, e in features]
        keys = np.array(
            [complex(j, edge) for j, e in enumerate(shifted) for edge in e],
            dtype=np.complex128,
        )
        sizes = np.array([len(e) for _, e in features], dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        width = sizes + 2  # positions 0..len(edges) and null
        offsets = np.concatenate([[0], np.cumsum(width)[:-1]]).astype(np.int64)
        plan = [(e, len(e), int(o)) for e, o in zip(shifted, offsets.tolist(), strict=True)]
        index = np.arange(len(features), dtype=np.float64)
        names = [n for n, _ in features]
        return cls(names, keys, offsets - starts, index, sizes, int(width.sum()), plan)

    def positions(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Slot of every value (rows x features; no NaN: requests with missing numeric values
        are refused before they are counted), flattened.

        One `searchsorted` for every feature at once: a value x of feature j becomes the complex
        key j + x·i, and numpy orders complex numbers by real part, then imaginary part, so the
        search runs in feature j's edges only (`self.keys`, built once). The last edge is
        stored as the next float up, so a value equal to it lands in the last bin.
        """
        keys = np.empty(values.shape, dtype=np.complex128)
        keys.real = self.feature_index
        keys.imag = values
        found = np.searchsorted(self.keys, keys, side="right") + self.shift
        flat: np.ndarray[Any, Any] = found.ravel()
        return flat

    def count(self, values: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Counts per slot of a batch (vectorised)."""
        return np.bincount(self.positions(values), minlength=self.slots)

    def count_rows(self, rows: Iterable[Sequence[float]], counts: list[int]) -> None:
        """Add a few rows to `counts` (a list with one entry per slot), without numpy."""
        plan = self.plan
        for row in rows:
            for value, (edges, _, offset) in zip(row, plan, strict=True):
                counts[offset + bisect_right(edges, value)] += 1

    def labels(self) -> list[tuple[str, str]]:
        """(feature, bin) of every slot, in slot order."""
        return [
            (name, str(position) if position <= size else "null")
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
        labels = [*top, OTHER, UNSEEN, NULL]
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
