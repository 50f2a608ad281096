"""Per-feature statistics of a snapshot: the `flywheel.dev/stats/v1` document (drift baseline).

Serving bins live traffic on the histogram edges written here and the monitor compares the
window's counts with these, so the format is a contract (docs/stats-format.md). Numeric features
get quantile-based edges; categorical ones their top-K categories plus `__other__`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from flywheel.data.schema import ResolvedSchema
from flywheel_serving.names import OTHER, STATS_FORMAT

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_OTHER_VALUES = 1000


def _number(value: Any) -> float | None:
    number = float(value)
    return None if np.isnan(number) else number


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


def numeric_stats(series: pd.Series, bins: int) -> dict[str, Any]:
    """Count, nulls, moments, quantiles and a quantile-binned histogram."""
    values = series.dropna().to_numpy(dtype=float)
    stats: dict[str, Any] = {
        "type": "numeric",
        "count": len(values),
        "nulls": int(series.isna().sum()),
    }
    if not len(values):
        return {**stats, "histogram": {"edges": [0.0, 0.0], "counts": [0, 0, 0]}}
    # One selection pass serves both the reported quantiles and the bin edges.
    probabilities = np.concatenate([np.linspace(0.0, 1.0, bins + 1), QUANTILES])
    cuts = np.quantile(values, probabilities)
    edges = unique_edges(cuts[: bins + 1])
    return {
        **stats,
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, cuts[bins + 1 :], strict=True)},
        "histogram": {"edges": edges, "counts": bin_counts(values, edges)},
    }


def categorical_stats(series: pd.Series, top_k: int) -> dict[str, Any]:
    """Count, nulls, distinct values, the top-K categories and the rest as `__other__`."""
    values = series.dropna().astype(str)
    counts = values.value_counts(sort=True)
    counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    top = counts.iloc[:top_k]
    total = len(values)
    return {
        "type": "categorical",
        "count": total,
        "nulls": int(series.isna().sum()),
        "unique": int(counts.size),
        "categories": [
            {"value": str(v), "count": int(c), "frequency": c / total if total else 0.0}
            for v, c in top.items()
        ],
        OTHER: int(counts.iloc[top_k:].sum()),
        # So that serving can tell a rare known value (__other__) from an unseen one.
        "otherValues": sorted(str(v) for v in counts.index[top_k:])[:MAX_OTHER_VALUES],
        "otherValuesComplete": bool(counts.size - top_k <= MAX_OTHER_VALUES),
    }


def compute_stats(
    frame: pd.DataFrame, schema: ResolvedSchema, *, bins: int, top_k: int, identity: dict[str, str]
) -> dict[str, Any]:
    """The stats document of a snapshot."""
    features = []
    for feature in schema.features:
        column = frame[feature.name]
        if feature.type == "numeric":
            body = numeric_stats(pd.to_numeric(column, errors="coerce"), bins)
        else:
            body = categorical_stats(column, top_k)
        features.append({"name": feature.name, **body})
    label = frame[schema.label]
    label_stats = (
        categorical_stats(label, top_k=1000)
        if schema.label_type == "categorical"
        else numeric_stats(pd.to_numeric(label, errors="coerce"), bins)
    )
    return {
        "format": STATS_FORMAT,
        "dataset": identity,
        "rows": len(frame),
        "columns": len(frame.columns),
        "label": {"name": schema.label, **label_stats},
        "features": features,
    }
