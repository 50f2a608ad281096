"""Read a Dataset source into pandas as the ingest Job types it (for tests of the data layer)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pyarrow as pa

from flywheel.api.dataset import DataSource
from flywheel.data.columns import ColumnTyping, Kind
from flywheel.data.snapshot import convert
from flywheel.data.sources import open_source
from flywheel.data.transfer import Limits

NO_LIMIT = Limits(max_bytes=2**50)


def read_source(source: DataSource, *, pvc_root: Path, limits: Limits = NO_LIMIT) -> pd.DataFrame:
    """Every column of the source, typed by all of its values (as the Job settles them)."""
    with tempfile.TemporaryDirectory() as spool:
        local = open_source(source, pvc_root=pvc_root, spool=Path(spool), limits=limits)
        names = local.names()
        typings = [ColumnTyping(n) for n in names]
        for batch in local.batches(names):
            for column, typing in zip(batch.columns, typings, strict=True):
                typing.update(column)
        kinds = [t.kind for t in typings]
        text = [n for n, k in zip(names, kinds, strict=True) if k == Kind.STRING]
        typed = [
            pa.RecordBatch.from_arrays(
                [convert(column, kind) for column, kind in zip(b.columns, kinds, strict=True)],
                names=names,
            )
            for b in local.batches(names, text=text)
        ]
        schema = pa.schema([(n, k.arrow_type) for n, k in zip(names, kinds, strict=True)])
        frame: pd.DataFrame = pa.Table.from_batches(typed, schema=schema).to_pandas()
        return frame


def kinds_of(frame: pd.DataFrame) -> dict[str, Kind]:
    """The kind of each column of a DataFrame, as the Job would type it."""
    kinds = {}
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_bool_dtype(column):
            kinds[str(name)] = Kind.BOOL
        elif pd.api.types.is_integer_dtype(column):
            kinds[str(name)] = Kind.INT
        elif pd.api.types.is_numeric_dtype(column):
            kinds[str(name)] = Kind.FLOAT
        else:
            kinds[str(name)] = Kind.STRING
    return kinds
