"""Everything learned from a written snapshot, its columns read side by side.

Each column is profiled (:mod:`flywheel.data.profile`) and its statistics computed
(:mod:`flywheel.data.stats`) by one task, reading the snapshot on its own, while another task
computes the digest a column at a time (:func:`~flywheel.data.snapshot.snapshot_digest`):
:data:`WORKERS` columns at a time plus the digest, so memory stays that of a few columns, and
the numpy, Arrow and hashing work (which release the GIL) uses the cores the Job has. The label's
type is settled here when no task is declared: a numeric label with whole values and few
distinct ones is profiled again as classes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from flywheel.api.dataset import DatasetSpec
from flywheel.data.columns import Kind
from flywheel.data.profile import ColumnSummary, profile_column
from flywheel.data.schema import ResolvedSchema, label_type
from flywheel.data.snapshot import open_snapshot, snapshot_digest
from flywheel.data.stats import LABEL_TOP_K, column_stats

WORKERS = 2


@dataclass(frozen=True)
class Examined:
    """The snapshot's schema (label type settled), column summaries, statistics and digest."""

    schema: ResolvedSchema
    summaries: dict[str, ColumnSummary]
    stats: dict[str, dict[str, Any]]
    digest: str


def examine(
    path: Path, schema: ResolvedSchema, kinds: dict[str, Kind], spec: DatasetSpec
) -> Examined:
    """Profile every column of the snapshot at `path`, compute its statistics and digest."""
    types = {f.name: f.type for f in schema.features} | {schema.label: schema.label_type}

    def column(name: str, categorical: bool) -> tuple[ColumnSummary, dict[str, Any]]:
        snapshot = open_snapshot(path)
        summary = profile_column(
            snapshot,
            name,
            kinds[name],
            categorical=categorical,
            rules=[r for r in spec.validation.rules or () if r.column == name],
            max_categories=spec.validation.max_categories,
            label=name == schema.label,
        )
        top_k = LABEL_TOP_K if name == schema.label else spec.statistics.top_k
        body = column_stats(summary, snapshot, bins=spec.statistics.bins, top_k=top_k)
        summary.release()
        return summary, body

    with ThreadPoolExecutor(max_workers=WORKERS + 1) as pool:
        digest = pool.submit(snapshot_digest, path)
        futures = {c: pool.submit(column, c, types[c] == "categorical") for c in schema.columns}
        done = {c: future.result() for c, future in futures.items()}
        label, _ = done[schema.label]
        if spec.data_schema.task is None and not label.categorical:
            settled = label_type(label.kind, label.integral, len(label.distinct))
            schema = replace(schema, label_type=settled)
            if settled == "categorical":
                classes, body = column(schema.label, True)
                done[schema.label] = (replace(classes, tallies=label.tallies), body)
        return Examined(
            schema=schema,
            summaries={c: summary for c, (summary, _) in done.items()},
            stats={c: body for c, (_, body) in done.items()},
            digest=digest.result(),
        )
