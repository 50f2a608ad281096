"""Per-feature statistics of a snapshot: the `flywheel.dev/stats/v1` document (drift baseline).

Serving bins live traffic on the histogram edges written here and the monitor compares the
window's counts with these, so the format is a contract (docs/stats-format.md). Numeric features
get quantile-based edges (exact up to a million values, from a quantile sketch beyond, with the
exact minimum and maximum as the outer edges); categorical ones their top-K categories plus
`__other__`.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.data.profile import ColumnSummary
from flywheel.data.schema import ResolvedSchema
from flywheel.data.snapshot import column_batches
from flywheel_serving.names import OTHER, STATS_FORMAT

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_OTHER_VALUES = 1000
LABEL_TOP_K = 1000


def unique_edges(cuts: np.ndarray) -> list[float]:
    """Quantile cuts as histogram edges: duplicates removed, at least two edges."""
    edges = [float(e) for e in np.unique(cuts)]
    return edges * 2 if len(edges) == 1 else edges


def quantile_edges(values: np.ndarray, bins: int) -> list[float]:
    """`bins + 1` quantile edges of `values` (see :func:`unique_edges`)."""
    return unique_edges(np.quantile(values, np.linspace(0.0, 1.0, bins + 1)))


def bin_counts(values: np.ndarray, edges: list[float]) -> list[int]:
    """Counts in [underflow, bin 1 .. bin B, overflow] under the serving rule.

    Bin i holds edges[i] <= x < edges[i+1], the last bin also holds x == edges[-1];
    underflow is x < edges[0], overflow is x > edges[-1].
    """
    e = np.asarray(edges)
    positions = np.searchsorted(e, values, side="right")  # 0: underflow, len(e): beyond the end
    positions = np.where(values == e[-1], len(e) - 1, positions)
    counts = np.bincount(positions, minlength=len(e) + 1)
    return [int(c) for c in counts]


def sorted_bin_counts(ordered: np.ndarray, edges: list[float]) -> list[int]:
    """:func:`bin_counts` of values already sorted: a binary search per edge, not per value."""
    e = np.asarray(edges)
    below = np.searchsorted(ordered, e, side="left")  # values < edge
    last = int(np.searchsorted(ordered, e[-1], side="right"))  # values <= the last edge
    counts = [int(below[0])]
    counts += [int(b - a) for a, b in itertools.pairwise(below[:-1])]
    counts += [last - int(below[-2]), len(ordered) - last]
    return counts


def numeric_stats(summary: ColumnSummary, bins: int, snapshot: pq.ParquetFile) -> dict[str, Any]:
    """Count, nulls, moments, quantiles and a quantile-binned histogram."""
    stats: dict[str, Any] = {"type": "numeric", "count": summary.finite, "nulls": summary.nulls}
    if not summary.finite:
        return {**stats, "histogram": {"edges": [0.0, 0.0], "counts": [0, 0, 0]}}
    probabilities = np.concatenate([np.linspace(0.0, 1.0, bins + 1), QUANTILES])
    values = summary.values
    if values is not None:
        # Sorted once: the quantiles and the bin counts are then binary searches.
        values = np.sort(values)
        cuts = np.quantile(values, probabilities)
        mean = float(values.mean())
        std = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    else:
        assert summary.sketch is not None
        cuts = summary.sketch.quantiles(probabilities)
        cuts[0], cuts[bins] = summary.minimum, summary.maximum
        mean, std = summary.mean, float(np.sqrt(summary.m2 / (summary.finite - 1)))
    edges = unique_edges(cuts[: bins + 1])
    if values is not None:
        counts = sorted_bin_counts(values, edges)
    else:
        counts = [0] * (len(edges) + 1)
        for array in column_batches(snapshot, summary.name):
            numbers = pc.drop_null(array).to_numpy(zero_copy_only=False).astype(float)
            counts = [a + b for a, b in zip(counts, bin_counts(numbers, edges), strict=True)]
    return {
        **stats,
        "min": summary.minimum,
        "max": summary.maximum,
        "mean": mean,
        "std": std,
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, cuts[bins + 1 :], strict=True)},
        "histogram": {"edges": edges, "counts": counts},
    }


def categorical_stats(summary: ColumnSummary, top_k: int) -> dict[str, Any]:
    """Count, nulls, distinct values, the top-K categories and the rest as `__other__`."""
    ranked = sorted(summary.counts.items(), key=lambda item: (-item[1], item[0]))
    total = summary.rows - summary.nulls
    top, rest = ranked[:top_k], ranked[top_k:]
    return {
        "type": "categorical",
        "count": total,
        "nulls": summary.nulls,
        "unique": len(ranked),
        "categories": [
            {"value": v, "count": c, "frequency": c / total if total else 0.0} for v, c in top
        ],
        OTHER: sum(c for _, c in rest),
        # So that serving can tell a rare known value (__other__) from an unseen one.
        "otherValues": sorted(v for v, _ in rest)[:MAX_OTHER_VALUES],
        "otherValuesComplete": len(rest) <= MAX_OTHER_VALUES,
    }


def column_stats(
    summary: ColumnSummary, snapshot: pq.ParquetFile, *, bins: int, top_k: int
) -> dict[str, Any]:
    """One column's entry of the stats document (without its name)."""
    if summary.categorical:
        return categorical_stats(summary, top_k)
    return numeric_stats(summary, bins, snapshot)


def compute_stats(
    bodies: dict[str, dict[str, Any]],
    schema: ResolvedSchema,
    *,
    rows: int,
    identity: dict[str, str],
) -> dict[str, Any]:
    """The stats document of a snapshot from its columns' entries (:func:`column_stats`)."""
    return {
        "format": STATS_FORMAT,
        "dataset": identity,
        "rows": rows,
        "columns": len(schema.columns),
        "label": {"name": schema.label, **bodies[schema.label]},
        "features": [{"name": f.name, **bodies[f.name]} for f in schema.features],
    }
