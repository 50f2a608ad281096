"""Quality rules, type and label checks, digests and statistics on known data, through the Job's
own path (CSV or Parquet on disk, streamed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import ArtifactStore
from flywheel.data import profile, snapshot
from flywheel.data.columns import Kind
from flywheel.data.errors import ParseError, ValidationFailed
from flywheel.data.sketch import QuantileSketch
from flywheel.data.snapshot import content_digest, short_version, snapshot_digest, write_snapshot
from flywheel.data.sources import LocalSource
from flywheel.data.stats import bin_counts, quantile_edges, sorted_bin_counts
from flywheel.interfaces.jobs import IngestReport
from flywheel.jobs.ingest import ingest, main

FRAME = pd.DataFrame(
    {
        "id": [1, 2, 3, 3],
        "size": [1.0, 2.5, None, 9.0],
        "color": ["red", "blue", "green", None],
        "target": [0, 1, 0, 1],
    }
)


def _ingest(
    tmp_path: Path, frame: pd.DataFrame, spec: dict[str, Any] | None = None, fmt: str = "csv"
) -> IngestReport:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"data.{fmt}"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    document = {"source": {"uri": f"file://{path}"}, **(spec or {})}
    return ingest(
        DatasetSpec.model_validate(document),
        namespace="ns",
        name="d",
        claim="art",
        store=ArtifactStore(tmp_path / "mnt"),
        previous_digest=None,
    )


def _failures(tmp_path: Path, frame: pd.DataFrame, spec: dict[str, Any]) -> list[str]:
    try:
        _ingest(tmp_path, frame, spec)
    except ValidationFailed as failed:
        return failed.failures
    return []


@pytest.mark.parametrize(
    ("rule", "failure"),
    [
        ({"column": "size", "min": 0}, None),
        ({"column": "size", "min": 2}, "min on size: 1 values below 2.0 (smallest 1.0)"),
        ({"column": "size", "max": 9}, None),
        ({"column": "size", "max": 5}, "max on size: 1 values above 5.0 (largest 9.0)"),
        ({"column": "color", "allowedValues": ["red", "blue", "green"]}, None),
        (
            {"column": "color", "allowedValues": ["red", "blue"]},
            "allowedValues on color: 1 values not allowed (green)",
        ),
        ({"column": "target", "unique": True}, "unique on target: duplicated values (0, 1)"),
        ({"column": "id", "unique": True}, "unique on id: duplicated values (3)"),
        ({"column": "color", "unique": True}, None),
        ({"column": "size", "maxNullFraction": 0.25}, None),
        ({"column": "size", "maxNullFraction": 0.1}, "maxNullFraction on size: 0.250 null"),
        ({"column": "color", "min": 1}, "min/max need a numeric column"),
        ({"column": "nope", "unique": True}, "rule on nope: no such column"),
    ],
)
def test_each_rule_passes_or_fails_with_the_observed_value(
    tmp_path: Path, rule: dict[str, Any], failure: str | None
) -> None:
    failures = _failures(tmp_path, FRAME, {"validation": {"rules": [rule]}})
    if failure is None:
        assert failures == []
    else:
        (message,) = failures
        assert failure in message


def test_row_count_and_null_share(tmp_path: Path) -> None:
    assert _failures(tmp_path, FRAME, {"validation": {"minRows": 4, "maxNullFraction": 0.25}}) == []
    failures = _failures(tmp_path, FRAME, {"validation": {"minRows": 5, "maxNullFraction": 0.2}})
    assert failures[0] == "minRows: 4 rows, at least 5 required"
    assert any("column size is 0.250 null" in f for f in failures)
    assert any("column color is 0.250 null" in f for f in failures)


# Types and labels checked against the declaration -----------------------------------------------

PEOPLE = pd.DataFrame(
    {
        "age": ["31", "45", "forty-two", "27", "33", "n/a", "51"],
        "city": ["Paris", "Lyon", "Paris", "Nice", "Lyon", "Paris", "Nice"],
        "label": [1, 0, 1, 0, 1, 0, 1],
    }
)
DECLARED = {"schema": {"features": [{"name": "age"}, {"name": "city", "type": "categorical"}]}}


def test_a_declared_numeric_feature_holding_text_fails_with_count_and_examples(
    tmp_path: Path,
) -> None:
    (failure,) = _failures(tmp_path, PEOPLE, DECLARED)
    assert failure == (
        "type of age: declared numeric, but 1 of 7 values are not numbers ('forty-two')"
    )  # `n/a` is a missing value, as pandas reads it
    versions = tmp_path / "mnt" / "art" / "datasets" / "ns" / "d"
    assert list(versions.iterdir()) == [], "nothing published, nothing left behind"
    many = PEOPLE.assign(age=[f"x{i}" for i in range(7)])
    (failure,) = _failures(tmp_path, many, DECLARED)
    assert "7 of 7 values are not numbers ('x0', 'x1', 'x2', 'x3', 'x4')" in failure
    # Undeclared, the same column is simply categorical.
    assert _failures(tmp_path, PEOPLE, {}) == []


def test_text_far_down_the_file_decides_the_type(tmp_path: Path) -> None:
    """Batches typed one by one: a word after 300,000 integers (several batches) still fails a
    declared numeric column, and an undeclared one becomes text, values as written."""
    rows = 300_001
    ages = [str(i % 90) for i in range(rows - 1)] + ["unknown"]
    frame = pd.DataFrame({"age": ages, "label": [i % 2 for i in range(rows)]})
    (failure,) = _failures(tmp_path, frame, {"schema": {"features": [{"name": "age"}]}})
    assert "1 of 300001 values are not numbers ('unknown')" in failure
    report = _ingest(tmp_path, frame, {"validation": {"maxCategories": 100}})
    data = pd.read_parquet(ArtifactStore(tmp_path / "mnt").path(report.snapshot_uri))
    assert data["age"].iloc[-1] == "unknown"
    assert data["age"].iloc[0] == "0"
    assert report.digest == content_digest(pd.read_csv(tmp_path / "data.csv", dtype={"age": str}))


def test_integers_with_a_gap_far_down_are_floats_as_pandas_reads_them(tmp_path: Path) -> None:
    rows = 300_000
    values: list[float | None] = [float(i) for i in range(rows)]
    values[-1] = None
    frame = pd.DataFrame({"x": values, "label": [i % 2 for i in range(rows)]})
    report = _ingest(tmp_path, frame)
    data = pd.read_parquet(ArtifactStore(tmp_path / "mnt").path(report.snapshot_uri))
    assert data["x"].dtype == np.float64
    assert report.digest == content_digest(pd.read_csv(tmp_path / "data.csv"))


def test_a_single_class_label_is_refused(tmp_path: Path) -> None:
    (failure,) = _failures(tmp_path, PEOPLE.assign(label=1), {})
    assert failure == "label label: a single value (1) in every row; at least 2 are needed"
    (failure,) = _failures(tmp_path, PEOPLE.assign(label="yes"), {})
    assert "a single value (yes)" in failure


def test_classification_needs_enough_rows_per_class(tmp_path: Path) -> None:
    labels = PEOPLE.assign(label=["a", "a", "a", "b", "b", "b", "c"])
    spec = {"schema": {"task": "classification"}, "validation": {"minClassCount": 2}}
    (failure,) = _failures(tmp_path, labels, spec)
    assert failure == "minClassCount: 1 classes of label have fewer than 2 rows: c (1)"
    assert _failures(tmp_path, labels, {}) == [], "no task declared: only two classes needed"


def test_a_regression_label_must_be_numbers(tmp_path: Path) -> None:
    prices = PEOPLE.assign(label=["1.5", "2", "3", "cheap", "4", "5", "6"])
    (failure,) = _failures(tmp_path, prices, {"schema": {"task": "regression"}})
    assert failure == (
        "type of label: the label is declared for regression, but 1 of 7 values are not "
        "numbers ('cheap')"
    )


def test_infinite_numbers_and_too_many_categories_fail(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"x": [1.0, np.inf, 2.0, 3.0], "id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]}
    )
    failures = _failures(tmp_path, frame, {"validation": {"maxCategories": 3}})
    assert failures == [
        "type of x: 1 values are infinite",
        "maxCategories: column id has more than 3 distinct values (exclude it, declare it "
        "numeric, or raise validation.maxCategories)",
    ]


# Digests --------------------------------------------------------------------------------------


def test_digest_depends_on_content_only_whatever_the_batching(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(1)
    n = 10_007
    table = pa.table(
        {
            "i": rng.integers(0, 9, n),
            "f": np.where(rng.random(n) < 0.1, np.nan, rng.normal(size=n)),
            "b": pa.array([None if x < 0.05 else bool(x > 0.5) for x in rng.random(n)]),
            "s": pa.array([None if x < 0.1 else f"v{int(x * 50)}" for x in rng.random(n)]),
        }
    )
    kinds = {"i": Kind.INT, "f": Kind.FLOAT, "b": Kind.BOOL, "s": Kind.STRING}
    digests = set()
    for rows in (1, 7, 1000, n):
        path = tmp_path / f"{rows}.parquet"
        write_snapshot(table.to_batches(max_chunksize=rows), kinds, path)
        for read in (5, 4096):
            monkeypatch.setattr(snapshot, "READ_ROWS", read)
            digests.add(snapshot_digest(path))
    (digest,) = digests
    assert digest == content_digest(pd.read_parquet(tmp_path / "1.parquet"))
    changed = table.to_pandas()
    changed.loc[2, "s"] = "teal"
    assert content_digest(changed) != digest
    assert len(short_version(digest)) == 12


def test_the_same_rows_give_the_same_version_as_csv_or_parquet(tmp_path: Path) -> None:
    as_csv = _ingest(tmp_path / "a", FRAME)
    as_parquet = _ingest(tmp_path / "b", FRAME, fmt="parquet")
    assert as_csv.digest == as_parquet.digest
    assert as_csv.digest == content_digest(pd.read_csv(tmp_path / "a" / "data.csv"))


# Statistics -----------------------------------------------------------------------------------


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


def test_the_sketch_is_close_and_deterministic() -> None:
    rng = np.random.default_rng(5)
    values = rng.lognormal(size=2_000_000)
    probabilities = np.linspace(0, 1, 21)
    runs = []
    for _ in range(2):
        sketch = QuantileSketch(capacity=4096)
        for chunk in np.array_split(values, 37):
            sketch.update(chunk)
        runs.append(sketch.quantiles(probabilities))
    assert np.array_equal(runs[0], runs[1]), "same values, same order: same quantiles"
    ranks = np.searchsorted(np.sort(values), runs[0]) / len(values)
    assert np.abs(ranks - probabilities).max() < 0.005, "rank error under half a percent"


def test_stats_document_on_known_data(tmp_path: Path) -> None:
    report = _ingest(tmp_path, FRAME, {"statistics": {"bins": 4, "topK": 2}})
    stats = json.loads(ArtifactStore(tmp_path / "mnt").read_bytes(report.stats_uri))
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


def test_sketched_stats_agree_with_exact_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"x": rng.normal(10, 2, 50_000), "label": rng.integers(0, 2, 50_000)})
    exact = _ingest(tmp_path / "exact", frame)
    monkeypatch.setattr(profile, "EXACT_LIMIT", 1000)
    sketched = _ingest(tmp_path / "sketched", frame)
    assert exact.digest == sketched.digest
    docs = [
        json.loads(ArtifactStore(tmp_path / d / "mnt").read_bytes(r.stats_uri))["features"][0]
        for d, r in (("exact", exact), ("sketched", sketched))
    ]
    assert docs[1]["min"] == docs[0]["min"]
    assert docs[1]["max"] == docs[0]["max"]
    assert docs[1]["mean"] == pytest.approx(docs[0]["mean"])
    assert docs[1]["std"] == pytest.approx(docs[0]["std"])
    assert sum(docs[1]["histogram"]["counts"]) == 50_000
    ranks = np.searchsorted(np.sort(frame["x"]), docs[1]["histogram"]["edges"]) / 50_000
    assert np.abs(ranks - np.linspace(0, 1, 11)).max() < 0.01


# Publication ----------------------------------------------------------------------------------


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
    assert first["peakMemoryBytes"] > 0
    assert first["sourceBytes"] > 0
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
    versions = tmp_path / "art" / "datasets" / "ns" / "iris"
    assert [p.name for p in versions.iterdir()] == [first["digest"].removeprefix("sha256:")]


def test_failed_rules_publish_nothing(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    spec = DatasetSpec.model_validate(
        {"source": {"uri": "sklearn://iris"}, "validation": {"minRows": 1000}}
    )
    with pytest.raises(ValidationFailed, match="minRows: 150 rows"):
        ingest(spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None)
    assert list((tmp_path / "art" / "datasets" / "ns" / "iris").iterdir()) == []


def test_entrypoint_reports_through_the_termination_message(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    spec = json.dumps({"source": {"uri": "file:///nonexistent/data.csv"}})
    words = ["--spec", spec, "--namespace", "ns", "--name", "d", "--claim", "art"]
    code = main([*words, "--artifacts-root", str(tmp_path), "--termination-log", str(log)])
    assert code == 3, "a missing file is not retried"
    result = json.loads(log.read_text())
    assert result == {
        "ok": False,
        "reason": "SourceNotFound",
        "message": "file:///nonexistent/data.csv: No such file or directory",
    }


# Hostile and awkward CSVs (found by review) ------------------------------------------------------


def test_csv_batch_size_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Batches of 256 rows or one batch: a boolean column empty for the first 300 rows, integers
    that gain a gap after 3,000 rows, numbers that turn into a word at the end."""
    rows = 5000
    frame = pd.DataFrame(
        {
            "flag": [None] * 300 + [bool(i % 3) for i in range(rows - 300)],
            "n": [float(i) for i in range(3000)] + [None] + [float(i) for i in range(rows - 3001)],
            "code": [str(i % 50) for i in range(rows - 1)] + ["other"],
            "label": [i % 2 for i in range(rows)],
        }
    )
    digests = set()
    for per_chunk in (256, 1000, 100_000):
        monkeypatch.setattr(LocalSource, "_rows_per_chunk", lambda self, n=per_chunk: n)
        digests.add(_ingest(tmp_path / str(per_chunk), frame).digest)
    (digest,) = digests
    assert digest == content_digest(pd.read_csv(tmp_path / "256" / "data.csv", dtype={"code": str}))


def _ingest_csv(tmp_path: Path, text: str, spec: dict[str, Any] | None = None) -> IngestReport:
    """Ingest a CSV written as given (not through pandas)."""
    (tmp_path / "d.csv").write_text(text)
    document = {"source": {"uri": f"file://{tmp_path}/d.csv"}, **(spec or {})}
    store = ArtifactStore(tmp_path)
    spec_ = DatasetSpec.model_validate(document)
    return ingest(spec_, namespace="n", name="d", claim="c", store=store, previous_digest=None)


def test_an_unnamed_index_column_is_read_as_pandas_names_it(tmp_path: Path) -> None:
    text = ",x,target\n0,1.5,0\n1,2.5,1\n2,3.5,0\n"
    report = _ingest_csv(tmp_path, text, {"schema": {"exclude": ["Unnamed: 0"]}})
    assert (report.rows, report.columns) == (3, 2)


def test_rows_longer_than_the_header_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="more fields than the header"):
        _ingest_csv(tmp_path, "x,y,target\n1,2,3,0\n4,5,6,1\n7,8,9,0\n")


def test_awkward_values_are_judged_not_crashed_on(tmp_path: Path) -> None:
    assert _failures(
        tmp_path, FRAME, {"validation": {"rules": [{"column": "color", "allowedValues": []}]}}
    ) == ["allowedValues on color: 3 values not allowed (blue, green, red)"]
    empty_label = FRAME.assign(target=pd.Series([None] * 4, dtype=float))
    assert _failures(tmp_path, empty_label, {}) == ["label target: no value in any of the 4 rows"]
    flags = FRAME.assign(id=[True, False, True, True])
    (failure,) = _failures(tmp_path, flags, {"schema": {"features": [{"name": "id"}]}})
    assert (
        failure
        == "type of id: declared numeric, but 4 of 4 values are not numbers ('True', 'False')"
    )
    big = FRAME.assign(id=pd.Series([2**60 + 1, None, 2**60 + 3, 2**60 + 5], dtype=object))
    report = _ingest(tmp_path / "big", big)
    assert report.digest == content_digest(pd.read_csv(tmp_path / "big" / "data.csv"))


def test_text_deep_in_a_wide_file_is_a_type_failure_not_a_parse_error(tmp_path: Path) -> None:
    """pandas' low-memory mode would hand over a column mixing numbers and text."""
    rows = 200_000
    frame = pd.DataFrame({f"c{i}": range(rows) for i in range(9)})
    frame["x"] = [str(i) for i in range(rows - 1)] + ["x"]
    frame["label"] = [i % 2 for i in range(rows)]
    (failure,) = _failures(tmp_path, frame, {"schema": {"features": [{"name": "x"}]}})
    assert failure == "type of x: declared numeric, but 1 of 200000 values are not numbers ('x')"


def test_a_killed_ingest_leaves_nothing_behind_for_long(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    left = store.stage("pvc://art/datasets/ns/iris")
    (left / "source.csv").write_text("spooled by a Job that was killed")
    spec = DatasetSpec.model_validate({"source": {"uri": "sklearn://iris"}})
    report = ingest(
        spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None
    )
    versions = tmp_path / "art" / "datasets" / "ns" / "iris"
    assert [p.name for p in versions.iterdir()] == [report.digest.removeprefix("sha256:")]


def test_counts_on_sorted_values_follow_the_serving_rule() -> None:
    rng = np.random.default_rng(3)
    for values in (
        rng.normal(size=5000).round(1),  # many ties, values on the edges
        rng.integers(0, 4, 1000).astype(float),  # few distinct values: merged edges
        np.array([1.0]),
    ):
        for edges in (quantile_edges(values, 10), [0.0, 0.5], [-1.0, 1.0, 2.0], [1.0, 1.0]):
            assert sorted_bin_counts(np.sort(values), edges) == bin_counts(values, edges)
