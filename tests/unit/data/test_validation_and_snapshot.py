"""Quality rules, digests and statistics on known data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flywheel.api.dataset import ColumnRule, DatasetSchema, DatasetSpec, DatasetValidation
from flywheel.artifacts import ArtifactStore
from flywheel.data.errors import ValidationFailed
from flywheel.data.schema import ResolvedSchema, resolve_schema
from flywheel.data.snapshot import canonical_frame, content_digest, short_version
from flywheel.data.stats import bin_counts, compute_stats, quantile_edges
from flywheel.data.validation import check_rule, validate
from flywheel.jobs.ingest import ingest, main

FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3, 3],
        "size": [1.0, 2.5, None, 9.0],
        "color": ["red", "blue", "green", None],
        "target": [0, 1, 0, 1],
    }
)


def _schema() -> ResolvedSchema:
    return resolve_schema(FRAME, DatasetSchema())


@pytest.mark.parametrize(
    ("rule", "failure"),
    [
        (ColumnRule(column="size", min=0), None),
        (ColumnRule(column="size", min=2), "min on size: 1 values below 2.0"),
        (ColumnRule(column="size", max=9), None),
        (ColumnRule(column="size", max=5), "max on size: 1 values above 5.0 (largest 9.0)"),
        (ColumnRule(column="color", allowed_values=["red", "blue", "green"]), None),
        (
            ColumnRule(column="color", allowed_values=["red", "blue"]),
            "allowedValues on color: 1 values not allowed (green)",
        ),
        (ColumnRule(column="target", unique=True), "unique on target: duplicated values (0, 1)"),
        (ColumnRule(column="color", unique=True), None),
        (ColumnRule(column="size", max_null_fraction=0.25), None),
        (ColumnRule(column="size", max_null_fraction=0.1), "maxNullFraction on size: 0.250 null"),
        (ColumnRule(column="color", min=1), "min/max need a numeric column"),
        (ColumnRule(column="nope", unique=True), "rule on nope: no such column"),
    ],
)
def test_each_rule_passes_or_fails_with_the_observed_value(
    rule: ColumnRule, failure: str | None
) -> None:
    failures = check_rule(FRAME, rule)
    if failure is None:
        assert failures == []
    else:
        (message,) = failures
        assert failure in message


def test_row_count_and_null_share() -> None:
    schema = _schema()
    assert validate(FRAME, schema, DatasetValidation(min_rows=4, max_null_fraction=0.25)) == []
    failures = validate(FRAME, schema, DatasetValidation(min_rows=5, max_null_fraction=0.2))
    assert failures[0] == "minRows: 4 rows, at least 5 required"
    assert any("column size is 0.250 null" in f for f in failures)
    assert any("column color is 0.250 null" in f for f in failures)


def test_digest_depends_on_content_only() -> None:
    frame = canonical_frame(FRAME, list(FRAME.columns))
    same = canonical_frame(
        FRAME.copy().sample(frac=1, random_state=1).sort_index(), list(FRAME.columns)
    )
    assert content_digest(frame) == content_digest(same)
    changed = frame.copy()
    changed.loc[2, "color"] = "teal"
    assert content_digest(changed) != content_digest(frame)
    assert content_digest(frame).startswith("sha256:")
    assert len(short_version(content_digest(frame))) == 12


def test_histogram_counts_match_numpy_on_the_quantile_edges() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=10_000)
    edges = quantile_edges(values, 10)
    assert len(edges) == 11
    counts = bin_counts(values, edges)
    reference, _ = np.histogram(values, bins=edges)  # numpy's last bin is closed too
    assert counts[1:-1] == reference.tolist()
    assert counts[0] == counts[-1] == 0
    live = bin_counts(np.array([-100.0, edges[0], edges[-1], 100.0]), edges)
    assert (live[0], live[1], live[-2], live[-1]) == (1, 1, 1, 1)


def test_stats_document_on_known_data() -> None:
    stats = compute_stats(FRAME, _schema(), bins=4, top_k=2, identity={"name": "t"})
    assert stats["format"] == "flywheel.dev/stats/v1"
    assert stats["rows"] == 4
    by_name = {f["name"]: f for f in stats["features"]}
    size = by_name["size"]
    assert (size["count"], size["nulls"], size["min"], size["max"]) == (3, 1, 1.0, 9.0)
    assert size["mean"] == pytest.approx(12.5 / 3)
    assert size["std"] == pytest.approx(np.std([1.0, 2.5, 9.0], ddof=1))
    assert sum(size["histogram"]["counts"]) == 3
    color = by_name["color"]
    assert color["type"] == "categorical"
    assert [c["value"] for c in color["categories"]] == ["blue", "green"]  # ties: alphabetical
    assert color["__other__"] == 1
    assert color["nulls"] == 1
    assert stats["label"]["name"] == "target"
    assert {c["value"]: c["count"] for c in stats["label"]["categories"]} == {"0": 2, "1": 2}


def test_ingest_publishes_once_and_is_idempotent(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    spec = DatasetSpec.model_validate(
        {"source": {"uri": "sklearn://iris"}, "validation": {"minRows": 100}}
    )
    first = ingest(
        spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None
    ).model_dump(by_alias=True)
    assert (first["ok"], first["changed"], first["published"]) == (True, True, True)
    assert first["rows"] == 150
    stats = json.loads(store.read_bytes(first["statsURI"]))
    assert stats["dataset"]["digest"] == first["digest"]
    data = store.path(first["snapshotURI"])
    assert pd.read_parquet(data).shape == (150, 5)
    again = ingest(
        spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=first["digest"]
    ).model_dump(by_alias=True)
    assert again["digest"] == first["digest"]
    assert not again["changed"]
    assert not again["published"], "a published snapshot is never rewritten"


def test_failed_rules_publish_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    spec = DatasetSpec.model_validate(
        {"source": {"uri": "sklearn://iris"}, "validation": {"minRows": 1000}}
    )
    with pytest.raises(ValidationFailed, match="minRows: 150 rows"):
        ingest(spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None)
    assert not (tmp_path / "art").exists()


def test_entrypoint_reports_through_the_termination_message(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    spec = json.dumps({"source": {"uri": "file:///nonexistent/data.csv"}})
    code = main(
        [
            "--spec",
            spec,
            "--namespace",
            "ns",
            "--name",
            "d",
            "--claim",
            "art",
            "--artifacts-root",
            str(tmp_path),
            "--termination-log",
            str(log),
        ]
    )
    assert code == 3, "a missing file is not retried"
    result = json.loads(log.read_text())
    assert result == {
        "ok": False,
        "reason": "SourceNotFound",
        "message": "file:///nonexistent/data.csv: No such file or directory",
    }
