"""One pass over each column of the written snapshot: the facts that validation and statistics need.

Columns are profiled one at a time, a bounded number of rows at a time, so memory depends on
neither the row count nor the column count: a numeric column keeps its values for exact
quantiles up to :data:`EXACT_LIMIT` of them and a :class:`~flywheel.data.sketch.QuantileSketch`
beyond; a categorical one counts its values up to `max_categories` distinct ones (more fails
validation, so nothing past the bound is kept); a `unique` rule re-reads its column in hash
partitions of at most :data:`EXACT_LIMIT` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.api.dataset import ColumnRule
from flywheel.data.columns import Kind
from flywheel.data.schema import SMALL_DISTINCT
from flywheel.data.sketch import QuantileSketch
from flywheel.data.snapshot import column_batches

EXACT_LIMIT = 1 << 20
"""Values of one column kept in memory for exact quantiles (and per duplicate-check pass)."""
LISTED = 5


@dataclass
class RuleTally:
    """What one column rule found."""

    rule: ColumnRule
    below: int = 0
    smallest: float | None = None
    above: int = 0
    largest: float | None = None
    not_allowed: int = 0
    not_allowed_examples: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


@dataclass
class ColumnSummary:
    """One snapshot column, summarised."""

    name: str
    kind: Kind
    categorical: bool
    label: bool = False
    rows: int = 0
    nulls: int = 0
    infinite: int = 0
    tallies: list[RuleTally] = field(default_factory=list)
    # numeric columns
    exact: list[np.ndarray] | None = field(default_factory=list)
    sketch: QuantileSketch | None = None
    finite: int = 0
    minimum: float = np.inf
    maximum: float = -np.inf
    mean: float = 0.0
    m2: float = 0.0
    integral: bool = True
    distinct: set[float] = field(default_factory=set)
    # categorical columns
    counts: dict[str, int] = field(default_factory=dict)
    overflow: bool = False

    def release(self) -> None:
        """Drop the values kept for the statistics, once they are computed."""
        self.exact, self.sketch = [], None

    @property
    def values(self) -> np.ndarray | None:
        """Every finite value, when few enough were kept; None when they were sketched."""
        return None if self.exact is None else np.concatenate([np.empty(0), *self.exact])


def text_of(present: pa.Array) -> pa.Array:
    """Values (no nulls) as the text a categorical feature compares (pandas' `str()`)."""
    if pa.types.is_string(present.type):
        return present
    numbers = present.to_numpy(zero_copy_only=False)
    return pa.array(pd.Series(numbers).astype(str).to_numpy(dtype=object), type=pa.string())


def profile_column(
    snapshot: pq.ParquetFile,
    name: str,
    kind: Kind,
    *,
    categorical: bool,
    rules: list[ColumnRule],
    max_categories: int,
    label: bool = False,
) -> ColumnSummary:
    """Read one column once (twice with a `unique` rule) and summarise it (`label`: also
    whether its values are whole and how many distinct ones)."""
    summary = ColumnSummary(
        name, kind, categorical, label=label, tallies=[RuleTally(r) for r in rules]
    )
    for array in column_batches(snapshot, name):
        summary.rows += len(array)
        summary.nulls += array.null_count
        present = pc.drop_null(array)
        if not len(present):
            continue
        for tally in summary.tallies:
            _tally(tally, present, kind)
        if categorical:
            _count(summary, text_of(present), max_categories)
        elif kind.numeric:
            _measure(summary, present.to_numpy(zero_copy_only=False).astype(float))
    for tally in summary.tallies:
        if tally.rule.unique:
            tally.duplicates = duplicates(snapshot, name, summary.rows - summary.nulls)
    return summary


def _tally(tally: RuleTally, present: pa.Array, kind: Kind) -> None:
    rule = tally.rule
    if kind.numeric and (rule.min is not None or rule.max is not None):
        values = present.to_numpy(zero_copy_only=False).astype(float)
        if rule.min is not None and (low := values < rule.min).any():
            tally.below += int(low.sum())
            low_value = float(values.min())
            tally.smallest = low_value if tally.smallest is None else min(tally.smallest, low_value)
        if rule.max is not None and (high := values > rule.max).any():
            tally.above += int(high.sum())
            high_value = float(values.max())
            tally.largest = high_value if tally.largest is None else max(tally.largest, high_value)
    if rule.allowed_values is not None:
        texts = text_of(present)
        allowed = pa.array(rule.allowed_values, pa.string())
        bad = pc.filter(texts, pc.invert(pc.is_in(texts, value_set=allowed)))
        if len(bad):
            tally.not_allowed += len(bad)
            merged = set(tally.not_allowed_examples) | set(pc.unique(bad).to_pylist())
            tally.not_allowed_examples = sorted(merged)[:LISTED]


def _count(summary: ColumnSummary, texts: pa.Array, max_categories: int) -> None:
    counted = pc.value_counts(texts)
    counts = summary.counts
    for value, count in zip(
        counted.field("values").to_pylist(), counted.field("counts").to_pylist(), strict=True
    ):
        if value in counts:
            counts[value] += count
        elif len(counts) < max_categories:
            counts[value] = count
        else:
            summary.overflow = True


def _measure(summary: ColumnSummary, values: np.ndarray) -> None:
    finite = np.isfinite(values)
    summary.infinite += int((~finite).sum())
    values = values[finite]
    if not len(values):
        return
    summary.minimum = min(summary.minimum, float(values.min()))
    summary.maximum = max(summary.maximum, float(values.max()))
    # Chan et al.'s parallel update of the mean and the sum of squared deviations.
    n, count = summary.finite, len(values)
    mean = float(values.mean())
    delta = mean - summary.mean
    summary.m2 += float(((values - mean) ** 2).sum()) + delta**2 * n * count / (n + count)
    summary.mean += delta * count / (n + count)
    summary.finite = n + count
    if summary.label:  # whether its values are whole numbers, and a few of them
        summary.integral = summary.integral and bool((values == np.floor(values)).all())
        if len(summary.distinct) <= SMALL_DISTINCT:
            summary.distinct.update(np.unique(values)[: SMALL_DISTINCT + 1].tolist())
    if summary.exact is not None:
        summary.exact.append(values)
        if summary.finite > EXACT_LIMIT:
            summary.sketch = QuantileSketch()
            for kept in summary.exact:
                summary.sketch.update(kept)
            summary.exact = None
    elif summary.sketch is not None:
        summary.sketch.update(values)


def duplicates(snapshot: pq.ParquetFile, name: str, count: int) -> list[str]:
    """Up to five values that occur more than once, in hash partitions of bounded size."""
    parts = max(1, -(-count // EXACT_LIMIT))
    found: list[str] = []
    for part in range(parts):
        kept = []
        for array in column_batches(snapshot, name):
            values = pc.drop_null(array).to_numpy(zero_copy_only=False)
            if parts > 1:
                values = values[pd.util.hash_array(values) % parts == part]
            kept.append(values)
        series = pd.Series(np.concatenate(kept) if kept else [])
        repeated = series[series.duplicated()].astype(str).unique().tolist()
        found += [v for v in repeated if v not in found][: LISTED - len(found)]
        if len(found) >= LISTED:
            break
    return found
