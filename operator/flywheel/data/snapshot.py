"""The canonical snapshot of a dataset and its content digest (the version).

The digest is the sha256 of a canonical CSV rendering (the resolved columns in order, `\\n` line
ends, floats in their shortest round-trip form, empty cells for nulls), so it depends only on the
content: the same rows give the same digest whatever the source format, and one changed cell
changes it. The snapshot itself is stored as Parquet.
"""

from __future__ import annotations

import hashlib
import io

import pandas as pd

SHORT = 12


def canonical_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The snapshot's columns, in order, with a clean RangeIndex."""
    return frame[columns].reset_index(drop=True)


def content_digest(frame: pd.DataFrame) -> str:
    """`sha256:<hex>` of the canonical CSV rendering."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, lineterminator="\n", float_format=None, na_rep="")
    return "sha256:" + hashlib.sha256(buffer.getvalue().encode()).hexdigest()


def short_version(digest: str) -> str:
    """The version name: the first 12 hex characters of the digest."""
    return digest.removeprefix("sha256:")[:SHORT]


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The snapshot as Parquet."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()
