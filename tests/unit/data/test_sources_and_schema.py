"""Reading sources and resolving schemas."""

from __future__ import annotations

import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from flywheel.api.dataset import DatasetSchema, DataSource, FeatureSpec
from flywheel.data.columns import Kind
from flywheel.data.errors import ParseError, SourceNotFound, SourceUnavailable
from flywheel.data.schema import Feature, label_type, resolve_schema, schema_changes
from flywheel.data.sources import infer_format
from tests.support.ports import free_port
from tests.support.sources import kinds_of, read_source

CSV = b"age,city,income,label\n31,Paris,52000.5,1\n45,Lyon,61000,0\n27,Paris,,1\n"


@pytest.fixture
def web(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving tmp_path."""
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_format_comes_from_the_declaration_or_the_extension() -> None:
    assert infer_format("https://x/data.parquet", None) == "parquet"
    assert infer_format("https://x/data.csv?raw=1", None) == "csv"
    assert infer_format("https://x/data", "parquet") == "parquet"


def test_bundled_iris_needs_no_network(tmp_path: Path) -> None:
    frame = read_source(DataSource(uri="sklearn://iris"), pvc_root=tmp_path)
    assert frame.shape == (150, 5)
    assert "target" in frame.columns


def test_csv_and_parquet_over_http(tmp_path: Path, web: str) -> None:
    (tmp_path / "d.csv").write_bytes(CSV)
    pd.read_csv(tmp_path / "d.csv").to_parquet(tmp_path / "d.parquet")
    from_csv = read_source(DataSource(uri=f"{web}/d.csv"), pvc_root=tmp_path)
    from_parquet = read_source(DataSource(uri=f"{web}/d.parquet"), pvc_root=tmp_path)
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    assert list(from_csv.columns) == ["age", "city", "income", "label"]


def test_pvc_and_file_sources(tmp_path: Path) -> None:
    (tmp_path / "claim" / "raw").mkdir(parents=True)
    (tmp_path / "claim" / "raw" / "d.csv").write_bytes(CSV)
    assert len(read_source(DataSource(uri="pvc://claim/raw/d.csv"), pvc_root=tmp_path)) == 3
    assert (
        len(read_source(DataSource(uri=f"file://{tmp_path}/claim/raw/d.csv"), pvc_root=tmp_path))
        == 3
    )


def test_unreachable_and_missing_sources(tmp_path: Path, web: str) -> None:
    """Unreachable may pass (retried); missing will not (stalled): test_source_errors.py has
    every case."""
    with pytest.raises(SourceUnavailable, match="Connection refused"):
        read_source(DataSource(uri=f"http://127.0.0.1:{free_port()}/d.csv"), pvc_root=tmp_path)
    with pytest.raises(SourceNotFound, match="HTTP 404"):
        read_source(DataSource(uri=f"{web}/missing.csv"), pvc_root=tmp_path)
    (tmp_path / "claim").mkdir()
    with pytest.raises(SourceNotFound, match="No such file"):
        read_source(DataSource(uri="pvc://claim/nothing.csv"), pvc_root=tmp_path)


def test_malformed_csv_says_where(tmp_path: Path) -> None:
    (tmp_path / "bad.csv").write_bytes(b"a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(
        ParseError, match=r"malformed CSV after row 0: .*Expected 2 fields in line 3, saw 4"
    ):
        read_source(DataSource(uri=f"file://{tmp_path}/bad.csv"), pvc_root=tmp_path)
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ParseError, match="not a valid Parquet"):
        read_source(DataSource(uri=f"file://{tmp_path}/bad.parquet"), pvc_root=tmp_path)


def _frame() -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(CSV))


def test_schema_inference() -> None:
    schema = resolve_schema(list(_frame().columns), kinds_of(_frame()), DatasetSchema())
    assert schema.label == "label"
    assert schema.label_type == "numeric", "provisional: settled once its values are seen"
    assert label_type(Kind.INT, integral=True, distinct=2) == "categorical"
    assert label_type(Kind.FLOAT, integral=False, distinct=2) == "numeric"
    assert label_type(Kind.INT, integral=True, distinct=51) == "numeric"
    assert label_type(Kind.STRING, integral=False, distinct=0) == "categorical"
    assert schema.features == (
        Feature("age", "numeric"),
        Feature("city", "categorical"),
        Feature("income", "numeric"),
    )
    assert schema.dropped == ()


def test_declared_schema_wins_and_excludes() -> None:
    declared = DatasetSchema(label="income", exclude=["city"])
    schema = resolve_schema(list(_frame().columns), kinds_of(_frame()), declared)
    assert schema.label == "income"
    assert schema.label_type == "numeric"
    assert [f.name for f in schema.features] == ["age", "label"]
    assert schema.dropped == ("city",)
    typed = resolve_schema(
        list(_frame().columns),
        kinds_of(_frame()),
        DatasetSchema(features=[FeatureSpec(name="age", type="categorical")]),
    )
    assert typed.features == (Feature("age", "categorical"),)


def test_declared_columns_must_exist() -> None:
    with pytest.raises(ParseError, match="declared columns not in the data: churn"):
        resolve_schema(list(_frame().columns), kinds_of(_frame()), DatasetSchema(label="churn"))


def test_schema_changes_are_listed() -> None:
    before = resolve_schema(list(_frame().columns), kinds_of(_frame()), DatasetSchema())
    changed = _frame().drop(columns=["city"]).assign(age=lambda f: f.age.astype(str))
    after = resolve_schema(list(changed.columns), kinds_of(changed), DatasetSchema())
    assert schema_changes(before, after) == [
        "feature city removed",
        "feature age changed from numeric to categorical",
    ]
    assert schema_changes(before, before) == []
