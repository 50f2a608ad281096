"""The canonical snapshot of a dataset, written as it streams, and its content digest (the version).

The snapshot is Parquet with the resolved columns in order, each converted to its
:class:`~flywheel.data.columns.Kind` (NaN stored as a missing value). The digest is the sha256 of
a canonical encoding of those columns (`flywheel.dev/digest/v1`): per column its name and kind,
then for numbers the null mask (bit-packed) and the little-endian 8-byte values (nulls as 0),
for everything else the values as UTF-8 text joined by 0x1E with nulls as 0x00 (booleans as
`True`/`False`). It depends only on the content: the same rows give the same digest whatever the
source format and however the rows were batched, and one changed cell changes it.

:func:`snapshot_digest` computes it a column at a time from the written file (bounded memory);
:func:`content_digest` computes the same from a DataFrame as pandas reads the snapshot, which is
how the training Job checks what it loaded.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.data.columns import TRUE_TEXT, ColumnTyping, Kind
from flywheel.data.errors import ParseError

SHORT = 12
HEADER = b"flywheel.dev/digest/v1\n"
READ_ROWS = 1 << 18
"""Rows of one column read from the snapshot at a time."""


def convert(array: pa.Array, kind: Kind) -> pa.Array:
    """A source column's batch as the snapshot stores it (integers beyond 2**53 become the
    nearest float, as pandas reads them)."""
    if array.null_count == len(array):
        return pa.nulls(len(array), kind.arrow_type)
    if kind == Kind.BOOL and not pa.types.is_boolean(array.type):
        truth = pc.is_in(array, value_set=pa.array(TRUE_TEXT))
        return pc.if_else(pc.is_null(array), pa.scalar(None, pa.bool_()), truth)
    lossy = kind == Kind.FLOAT and pa.types.is_integer(array.type)
    converted = pc.cast(array, kind.arrow_type, safe=not lossy)
    if kind == Kind.FLOAT:
        converted = pc.if_else(pc.is_nan(converted), pa.scalar(None, pa.float64()), converted)
    return converted


def _writer(path: Path, kinds: dict[str, Kind]) -> pq.ParquetWriter:
    """Text dictionary-encoded and compressed; numbers and booleans plain and uncompressed
    (measured here: they hardly compress, and reading them back is three times faster)."""
    schema = pa.schema([(name, kind.arrow_type) for name, kind in kinds.items()])
    text = [name for name, kind in kinds.items() if kind == Kind.STRING]
    codecs = {name: "snappy" if name in text else "none" for name in kinds}
    return pq.ParquetWriter(path, schema, compression=codecs, use_dictionary=text)


def open_snapshot(path: Path) -> pq.ParquetFile:
    """The snapshot for reading a column at a time (no read-ahead of whole columns, which
    would hold a column of every row group in memory)."""
    return pq.ParquetFile(path, pre_buffer=False)


def _batch(batch: pa.RecordBatch, kinds: dict[str, Kind], first_row: int) -> pa.RecordBatch:
    try:
        arrays = [convert(batch.column(i), k) for i, k in enumerate(kinds.values())]
    except pa.ArrowException as error:
        last = first_row + batch.num_rows
        raise ParseError(f"rows {first_row + 1}-{last}: {error}") from error
    return pa.RecordBatch.from_arrays(arrays, names=list(kinds))


def write_snapshot(batches: Iterable[pa.RecordBatch], kinds: dict[str, Kind], path: Path) -> int:
    """Write the batches' columns (in the order of `kinds`, converted to them) as the
    snapshot; the row count."""
    rows = 0
    with _writer(path, kinds) as writer:
        for batch in batches:
            writer.write_batch(_batch(batch, kinds, rows))
            rows += batch.num_rows
    return rows


def write_as_typed(
    batches: Iterable[pa.RecordBatch], typings: dict[str, ColumnTyping], path: Path
) -> dict[str, Kind] | None:
    """Type every batch and write the snapshot in the kinds of the first one, in one pass; the
    kinds written, or None when a later batch disagreed (writing stopped, typing went on: the
    snapshot must be written again in the settled kinds)."""
    written: dict[str, Kind] | None = None
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for batch in batches:
            found = [t.update(batch.column(i)) for i, t in enumerate(typings.values())]
            if rows == 0 and written is None:
                written = {n: k or Kind.FLOAT for n, k in zip(typings, found, strict=True)}
                writer = _writer(path, written)
            if writer is not None and written is not None:
                if all(_fits(k, w) for k, w in zip(found, written.values(), strict=True)):
                    writer.write_batch(_batch(batch, written, rows))
                else:
                    writer.close()
                    writer, written = None, None
            rows += batch.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


def _fits(found: Kind | None, written: Kind) -> bool:
    return found is None or found == written or (found == Kind.INT and written == Kind.FLOAT)


def column_batches(snapshot: pq.ParquetFile, name: str) -> Iterator[pa.Array]:
    """One column of the snapshot, a bounded number of rows at a time."""
    for batch in snapshot.iter_batches(batch_size=READ_ROWS, columns=[name]):
        yield batch.column(0)


Consumer = Callable[[pa.Array], None]


class SnapshotDigest:
    """The digest of a snapshot, fed a column at a time, each column's batches in order."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256(HEADER)

    def column(self, snapshot: pq.ParquetFile, name: str) -> Consumer:
        """Start the next column; the function that takes its batches. A numeric column with
        missing values reads its null mask first (the encoding puts it before the values)."""
        of = snapshot.schema_arrow.field(name).type
        if not (pa.types.is_integer(of) or pa.types.is_floating(of)):
            self.hash.update(f"{name}\x00s\x00".encode())
            return self._texts()
        code = "i" if pa.types.is_integer(of) else "f"
        self.hash.update(f"{name}\x00{code}\x00".encode())
        index = snapshot.schema_arrow.get_field_index(name)
        if null_count(snapshot, index):
            masks = (
                a.is_null().to_numpy(zero_copy_only=False) for a in column_batches(snapshot, name)
            )
            _digest_nulls(self.hash, masks)
        else:
            remaining = -(-snapshot.metadata.num_rows // 8)
            while remaining:
                step = min(remaining, 1 << 20)
                self.hash.update(bytes(step))
                remaining -= step
        dtype = "<i8" if code == "i" else "<f8"

        def values(array: pa.Array) -> None:
            filled = pc.fill_null(array, 0) if array.null_count else array
            numbers = np.ascontiguousarray(filled.to_numpy(zero_copy_only=False), dtype=dtype)
            self.hash.update(numbers.data)

        return values

    def _texts(self) -> Consumer:
        """The values as text joined by 0x1E, nulls as 0x00, across batches."""
        pending = False

        def texts(array: pa.Array) -> None:
            nonlocal pending
            if not len(array):
                return
            if pa.types.is_boolean(array.type):
                array = pc.if_else(array, "True", "False")
            # large_string: 64-bit offsets, so a batch may hold more than 2 GiB of text
            filled = pc.fill_null(pc.cast(array, pa.large_string()), "\x00")
            end, none = pa.scalar("\x1e", pa.large_string()), pa.scalar("", pa.large_string())
            joined = pc.binary_join_element_wise(filled, end, none)  # each value, then 0x1E
            offsets = np.frombuffer(joined.buffers()[1], dtype=np.int64)
            data = memoryview(joined.buffers()[2])[offsets[0] : offsets[len(joined)]]
            if pending:
                self.hash.update(b"\x1e")
            self.hash.update(data[:-1])
            pending = True

        return texts

    def hexdigest(self) -> str:
        """`sha256:<hex>`, once every column was fed."""
        return "sha256:" + self.hash.hexdigest()


def null_count(snapshot: pq.ParquetFile, index: int) -> int:
    """Missing values in a column, from the file's statistics (which this module writes)."""
    total = 0
    for group in range(snapshot.num_row_groups):
        stats = snapshot.metadata.row_group(group).column(index).statistics
        if stats is None or not stats.has_null_count:
            return int(snapshot.metadata.num_rows)  # unknown: assume some
        total += int(stats.null_count)
    return total


def snapshot_digest(path: Path) -> str:
    """`sha256:<hex>` of the snapshot's canonical encoding, one column at a time."""
    snapshot = open_snapshot(path)
    digest = SnapshotDigest()
    for name in snapshot.schema_arrow.names:
        consume = digest.column(snapshot, name)
        for array in column_batches(snapshot, name):
            consume(array)
    return digest.hexdigest()


def _digest_nulls(digest: Any, masks: Iterable[np.ndarray]) -> None:
    """The null masks, bit-packed as one array (bytes carried across batches)."""
    carry = np.zeros(0, dtype=bool)
    for mask in masks:
        bits = np.concatenate([carry, mask])
        whole = len(bits) - len(bits) % 8
        digest.update(np.packbits(bits[:whole]).tobytes())
        carry = bits[whole:]
    if len(carry):
        digest.update(np.packbits(carry).tobytes())


def content_digest(frame: pd.DataFrame) -> str:
    """`sha256:<hex>` of the canonical encoding of a DataFrame (the snapshot as pandas reads
    it): equal to :func:`snapshot_digest` of the file it was read from."""
    digest = hashlib.sha256(HEADER)
    for name in frame.columns:
        column = frame[name]
        nulls = column.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            kind = "i" if pd.api.types.is_integer_dtype(column) else "f"
            values = column.to_numpy(dtype="<i8" if kind == "i" else "<f8", na_value=0)
            digest.update(f"{name}\x00{kind}\x00".encode())
            digest.update(np.packbits(nulls).tobytes())
            digest.update(np.ascontiguousarray(values).tobytes())
        else:
            texts = column.astype(str).to_numpy(dtype=object)
            texts[nulls] = "\x00"
            digest.update(f"{name}\x00s\x00".encode())
            digest.update("\x1e".join(texts.tolist()).encode())
    return "sha256:" + digest.hexdigest()


def short_version(digest: str) -> str:
    """The version name: the first 12 hex characters of the digest."""
    return digest.removeprefix("sha256:")[:SHORT]
