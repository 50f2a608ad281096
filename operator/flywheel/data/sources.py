"""Dataset sources made local and read in batches: bundled scikit-learn data, HTTP(S), PVC, files.

:func:`open_source` checks the URI (a host, a port, a known scheme, a path inside its claim) and
the size (`source.maxBytes`) before anything is parsed, and makes the source readable twice: an
HTTP body is spooled to the staging directory (:mod:`flywheel.data.transfer`), a `pvc://` or
`file://` source is read where it is, a bundled dataset is a table in memory. What a read raises
becomes a :class:`~flywheel.data.errors.SourceError` whose reason says whether it may pass;
malformed content raises :class:`ParseError` with the position.

:meth:`LocalSource.batches` streams record batches with bounded memory. Parquet and
bundled columns come with their own types. CSV batches are parsed by pandas' C parser with its
missing-value markers, each batch typed by its own values: the types of the whole column are
settled by :mod:`flywheel.data.columns`, and a column whose batches disagree (integers, then a
decimal or a word far down the file) is read again as written.
"""

from __future__ import annotations

import csv
import queue
import stat
import threading
import urllib.parse
import warnings
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.api.dataset import BUNDLED_DATASETS, DataSource
from flywheel.artifacts import ArtifactError, ArtifactStore
from flywheel.data.errors import ParseError, SourceInvalid, SourceNotFound, source_error
from flywheel.data.transfer import Limits, download, too_large

Format = Literal["csv", "parquet"]
T = TypeVar("T")
BLOCK_BYTES = 16 << 20
"""CSV bytes parsed at a time (about)."""
BATCH_ROWS = 65_536
"""Parquet and bundled rows read at a time."""


def infer_format(uri: str, declared: Format | None) -> Format:
    """The declared format, else the file extension's; CSV when neither says."""
    if declared is not None:
        return declared
    path = uri.split("?", 1)[0].lower()
    return "parquet" if path.endswith((".parquet", ".pq")) else "csv"


@dataclass(frozen=True)
class LocalSource:
    """A source that can be read (more than once): a local file, or a table in memory."""

    uri: str
    format: Format | Literal["table"]
    size: int
    path: Path | None = None
    table: pa.Table | None = None

    def names(self) -> list[str]:
        """The column names, in order; ParseError for duplicates or no columns."""
        if self.table is not None:
            names = list(self.table.column_names)
        elif self.format == "parquet":
            names = list(self._parquet().schema_arrow.names)
        else:
            names = self._csv_header()
        if not names:
            raise ParseError(f"{self.uri}: no columns")
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ParseError(f"{self.uri}: duplicate column names: {', '.join(dupes)}")
        return names

    def batches(self, columns: list[str], text: Collection[str] = ()) -> Iterator[pa.RecordBatch]:
        """The rows of `columns` (in this order), a bounded number at a time. A CSV batch is
        typed by its own values (pandas' parser); `text`: CSV columns kept as written."""
        if self.table is not None:
            yield from self.table.select(columns).to_batches(max_chunksize=BATCH_ROWS)
        elif self.format == "parquet":
            try:
                yield from self._parquet().iter_batches(batch_size=BATCH_ROWS, columns=columns)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as error:
                raise ParseError(f"{self.uri}: malformed Parquet: {error}") from error
        else:
            yield from prefetched(self._csv_batches(columns, text))

    def _parquet(self) -> pq.ParquetFile:
        assert self.path is not None
        try:
            return pq.ParquetFile(self.path, pre_buffer=False, buffer_size=1 << 20)
        except (pa.ArrowInvalid, OSError) as error:
            raise ParseError(f"{self.uri} is not a valid Parquet file: {error}") from error

    def _csv_header(self) -> list[str]:
        """The header as pandas names the columns (`Unnamed: 0` for an empty name); duplicate
        names, which pandas would rename silently, are refused."""
        assert self.path is not None
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as handle:
                written = [n for n in next(csv.reader(handle), []) if n]
            named = [str(n) for n in pd.read_csv(self.path, nrows=0).columns]
        except (csv.Error, UnicodeDecodeError, pd.errors.ParserError) as error:
            raise ParseError(f"{self.uri}: malformed CSV header: {error}") from error
        except pd.errors.EmptyDataError:
            return []
        except OSError as error:
            raise source_error(error, self.uri) from error
        dupes = sorted({n for n in written if written.count(n) > 1})
        if dupes:
            raise ParseError(f"{self.uri}: duplicate column names: {', '.join(dupes)}")
        return named

    def _csv_batches(self, columns: list[str], text: Collection[str]) -> Iterator[pa.RecordBatch]:
        assert self.path is not None
        rows = 0
        try:
            chunks = pd.read_csv(
                self.path,  # every column: with `usecols` pandas ignores rows that are too long
                dtype=dict.fromkeys(text, str),
                chunksize=self._rows_per_chunk(),
                engine="c",
            )
            with chunks:
                while (chunk := _next_chunk(chunks)) is not None:
                    if not chunk.index.equals(pd.RangeIndex(rows, rows + len(chunk))):
                        # pandas takes the first columns as an index when rows are too long
                        raise ParseError(
                            f"{self.uri}: rows after row {rows} have more fields than the "
                            f"header's {len(chunk.columns)}"
                        )
                    table = pa.Table.from_pandas(
                        _text_if_mixed(chunk[columns]), preserve_index=False
                    )
                    rows += len(chunk)
                    yield from table.combine_chunks().to_batches()
        except (pd.errors.ParserError, ValueError, KeyError, pa.ArrowException) as error:
            where = f"{self.uri}: malformed CSV after row {rows}"
            raise ParseError(f"{where}: {str(error).strip()}") from error
        except OSError as error:
            raise source_error(error, self.uri) from error

    def _rows_per_chunk(self) -> int:
        """Rows per CSV batch so that a batch holds about :data:`BLOCK_BYTES` of text."""
        assert self.path is not None
        with self.path.open("rb") as handle:
            sample = handle.read(1 << 20)
        per_row = max(len(sample) // max(sample.count(b"\n"), 1), 1)
        return max(256, min(BATCH_ROWS * 4, BLOCK_BYTES // per_row))


def _next_chunk(chunks: Iterator[pd.DataFrame]) -> pd.DataFrame | None:
    """The next chunk; pandas' warning about a column of mixed types is handled (by
    :func:`_text_if_mixed`), not passed on."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        return next(chunks, None)


def _text_if_mixed(chunk: pd.DataFrame) -> pd.DataFrame:
    """The chunk with every column of one type: pandas' parser types a chunk in blocks of
    rows (its low-memory mode, twice as fast), so a column can hold numbers from one block and
    text from the next; such a column becomes text (and is read again as written, once its
    kind is settled)."""
    for name in chunk.columns:
        column = chunk[name]
        if column.dtype == object:
            found = pd.api.types.infer_dtype(column, skipna=True)
            if found not in ("string", "boolean", "empty"):
                chunk[name] = column.where(column.isna(), column.astype(str))
    return chunk


def prefetched(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """The same items, produced by a thread up to `depth` ahead of the consumer: parsing the
    next CSV batch overlaps with writing this one (pandas' parser and Arrow release the GIL).
    An error in the producer is raised in the consumer; a consumer that stops early stops it."""
    handoff: queue.Queue[tuple[T | None, BaseException | None, bool]] = queue.Queue(depth)
    stop = threading.Event()

    def offer(entry: tuple[T | None, BaseException | None, bool]) -> bool:
        """Hand over an entry unless the consumer stopped; whether it was handed over."""
        while not stop.is_set():
            try:
                handoff.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in batches:
                if not offer((item, None, False)):
                    return
            offer((None, None, True))
        except BaseException as error:  # handed to the consumer, raised there
            offer((None, error, True))

    producer = threading.Thread(target=produce, name="csv-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            item, error, last = handoff.get()
            if error is not None:
                raise error
            if last:
                return
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        producer.join()


def open_source(source: DataSource, *, pvc_root: Path, spool: Path, limits: Limits) -> LocalSource:
    """The source, checked and made local (`spool`: a directory for a downloaded body)."""
    uri = source.uri
    scheme, _, rest = uri.partition("://")
    if scheme == "sklearn":
        table = pa.Table.from_pandas(read_bundled(rest), preserve_index=False)
        return LocalSource(uri, "table", int(table.nbytes), table=table)
    fmt = infer_format(uri, source.format)
    if scheme in ("http", "https"):
        path = spool / f"source.{fmt}"
        size = download(check_http_uri(uri), path, limits)
        return LocalSource(uri, fmt, size, path=path)
    if scheme == "pvc":
        path = pvc_path(uri, pvc_root)
        claim = uri.removeprefix("pvc://").partition("/")[0]
        try:
            mounted = (pvc_root / claim).is_dir()
        except OSError as error:
            raise source_error(error, uri) from error
        if not mounted:
            raise SourceNotFound(f"{uri}: the claim {claim} is not mounted in the ingest pod")
    elif scheme == "file":
        path = Path("/" + rest.lstrip("/"))
    else:
        raise SourceInvalid(f"{uri}: unsupported source scheme {scheme!r}")
    return LocalSource(uri, fmt, file_size(path, uri, limits), path=path)


def file_size(path: Path, uri: str, limits: Limits) -> int:
    """The size of a readable regular file; a SourceError otherwise (not found, forbidden, a
    directory, over the limit)."""
    try:
        with path.open("rb") as handle:
            found = stat.S_ISREG((info := path.stat()).st_mode)
            handle.read(0)
    except OSError as error:
        raise source_error(error, uri) from error
    if not found:
        raise SourceInvalid(f"{uri}: not a regular file")
    if info.st_size > limits.max_bytes:
        raise too_large(uri, info.st_size, limits)
    return info.st_size


def read_bundled(name: str) -> pd.DataFrame:
    """A dataset bundled with scikit-learn (no network), features and a `target` column."""
    if name not in BUNDLED_DATASETS:
        raise SourceInvalid(
            f"sklearn://{name} is not a bundled dataset ({', '.join(BUNDLED_DATASETS)})"
        )
    from sklearn import datasets  # imported lazily: only this source needs scikit-learn

    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    if "target" not in frame.columns:
        frame["target"] = bunch.target
    return frame


def check_http_uri(uri: str) -> str:
    """The URI when it names a host (and a valid port); SourceInvalid otherwise."""
    try:
        parts = urllib.parse.urlsplit(uri)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number in range)
    except ValueError as error:
        raise SourceInvalid(f"{uri}: {error}") from error
    if not parts.hostname:
        raise SourceInvalid(f"{uri}: the URI has no host")
    return uri


def pvc_path(uri: str, pvc_root: Path) -> Path:
    """The local path of a `pvc://<claim>/<path>` source, by the artifact store's rules (the
    path stays inside its claim, after `..` and symbolic links); SourceInvalid otherwise."""
    try:
        return ArtifactStore(pvc_root).path(uri)
    except ArtifactError as error:
        raise SourceInvalid(str(error)) from error
