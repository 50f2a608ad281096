"""Read a Dataset source into a DataFrame: bundled scikit-learn data, HTTP(S), PVC and files.

`pvc://<claim>/<path>` resolves through the artifact mount (the Job mounts the claim); the
format comes from `source.format` or the extension. Network and missing-file problems raise
:class:`SourceUnavailable`; malformed content raises :class:`ParseError` with the position.
"""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path
from typing import Literal

import pandas as pd

from flywheel.api.dataset import BUNDLED_DATASETS, DataSource
from flywheel.data.errors import ParseError, SourceUnavailable

Format = Literal["csv", "parquet"]
HTTP_TIMEOUT = 60


def infer_format(uri: str, declared: Format | None) -> Format:
    """The declared format, else the file extension's; CSV when neither says."""
    if declared is not None:
        return declared
    path = uri.split("?", 1)[0].lower()
    return "parquet" if path.endswith((".parquet", ".pq")) else "csv"


def read_source(source: DataSource, *, pvc_root: Path) -> pd.DataFrame:
    """The source's rows as a DataFrame."""
    uri = source.uri
    scheme, _, rest = uri.partition("://")
    if scheme == "sklearn":
        return read_bundled(rest)
    fmt = infer_format(uri, source.format)
    if scheme in ("http", "https"):
        return parse(fetch_http(uri), fmt, uri)
    if scheme == "pvc":
        claim, _, path = rest.partition("/")
        return parse(read_file(pvc_root / claim / path, uri), fmt, uri)
    if scheme == "file":
        return parse(read_file(Path("/" + rest.lstrip("/")), uri), fmt, uri)
    raise SourceUnavailable(f"unsupported source scheme {scheme!r}")


def read_bundled(name: str) -> pd.DataFrame:
    """A dataset bundled with scikit-learn (no network), features and a `target` column."""
    if name not in BUNDLED_DATASETS:
        raise SourceUnavailable(
            f"sklearn://{name} is not a bundled dataset ({', '.join(BUNDLED_DATASETS)})"
        )
    from sklearn import datasets  # imported lazily: only this source needs scikit-learn

    loader = getattr(datasets, f"load_{name}")
    bunch = loader(as_frame=True)
    frame: pd.DataFrame = bunch.frame.copy()
    if "target" not in frame.columns:
        frame["target"] = bunch.target
    return frame


def fetch_http(uri: str) -> bytes:
    """The body of a URL; SourceUnavailable on any transport or HTTP error."""
    try:
        with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        raise SourceUnavailable(f"GET {uri}: HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise SourceUnavailable(f"GET {uri}: {reason}") from error


def read_file(path: Path, uri: str) -> bytes:
    """A file's bytes; SourceUnavailable when it is missing or unreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise SourceUnavailable(f"{uri}: {error.strerror or error}") from error


def parse(data: bytes, fmt: Format, uri: str) -> pd.DataFrame:
    """Bytes as a DataFrame; ParseError says where the content is malformed."""
    if fmt == "parquet":
        try:
            return pd.read_parquet(io.BytesIO(data), engine="pyarrow")
        except (ValueError, OSError) as error:  # pyarrow's ArrowInvalid is a ValueError
            raise ParseError(f"{uri} is not a valid Parquet file: {error}") from error
    try:
        frame = pd.read_csv(io.BytesIO(data), engine="c")
    except pd.errors.ParserError as error:
        raise ParseError(f"{uri}: malformed CSV: {error}") from error
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise ParseError(f"{uri}: {error}") from error
    if frame.empty and len(frame.columns) == 0:
        raise ParseError(f"{uri}: no columns")
    return frame
