"""Read a Dataset source into a DataFrame: bundled scikit-learn data, HTTP(S), PVC and files.

`pvc://<claim>/<path>` resolves through the artifact mount (the Job mounts the claim), with the
artifact store's own check that the path stays inside its claim; the format comes from
`source.format` or the extension. A URI is checked before anything is read (a host, a port, a
known scheme, a path inside its claim); what a read raises becomes a
:class:`~flywheel.data.errors.SourceError` whose reason says whether it may pass
(:func:`~flywheel.data.errors.classify`); malformed content raises :class:`ParseError` with the
position.
"""

from __future__ import annotations

import http.client
import io
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Literal

import pandas as pd

from flywheel.api.dataset import BUNDLED_DATASETS, DataSource
from flywheel.artifacts import ArtifactError, ArtifactStore
from flywheel.data.errors import ParseError, SourceInvalid, SourceNotFound, source_error

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
        return parse(fetch_http(check_http_uri(uri)), fmt, uri)
    if scheme == "pvc":
        return parse(read_pvc(uri, pvc_root), fmt, uri)
    if scheme == "file":
        return parse(read_file(Path("/" + rest.lstrip("/")), uri), fmt, uri)
    raise SourceInvalid(f"{uri}: unsupported source scheme {scheme!r}")


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


def read_pvc(uri: str, pvc_root: Path) -> bytes:
    """A `pvc://` source's bytes, from the claim mounted under `pvc_root`."""
    path = pvc_path(uri, pvc_root)
    claim = uri.removeprefix("pvc://").partition("/")[0]
    try:
        mounted = (pvc_root / claim).is_dir()
    except OSError as error:
        raise source_error(error, uri) from error
    if not mounted:
        raise SourceNotFound(f"{uri}: the claim {claim} is not mounted in the ingest pod")
    return read_file(path, uri)


def fetch_http(uri: str) -> bytes:
    """The body of a URL; a SourceError saying whether the failure may pass."""
    try:
        with urllib.request.urlopen(uri, timeout=HTTP_TIMEOUT) as response:
            return bytes(response.read())
    except (OSError, ValueError, http.client.HTTPException) as error:
        # OSError covers urllib's URLError/HTTPError, TLS, sockets and timeouts.
        if isinstance(error, urllib.error.HTTPError):
            error.close()  # it holds the connection
        raise source_error(error, f"GET {uri}") from error


def read_file(path: Path, uri: str) -> bytes:
    """A file's bytes; a SourceError (not found, forbidden, a directory…) when unreadable."""
    try:
        return path.read_bytes()
    except OSError as error:
        raise source_error(error, uri) from error


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
