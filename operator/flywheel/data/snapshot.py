"""The canonical snapshot of a dataset and its content digest (the version).

The digest is the sha256 of a canonical encoding of the resolved columns, in order
(`flywheel.dev/digest/v1`): per column its name and kind, then for numbers the null mask and the
little-endian 8-byte values (nulls as 0), for everything else the values as UTF-8 text joined by
0x1E with nulls as 0x00. It depends only on the content: the same rows give the same digest
whatever the source format, and one changed cell changes it. The snapshot is stored as Parquet.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pandas as pd

SHORT = 12


def canonical_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The snapshot's columns, in order, with a clean RangeIndex."""
    return frame[columns].reset_index(drop=True)


def content_digest(frame: pd.DataFrame) -> str:
    """`sha256:<hex>` of the canonical column encoding."""
    digest = hashlib.sha256(b"flywheel.dev/digest/v1\n")
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


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    """The snapshot as Parquet."""
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow", compression="zstd")
    return buffer.getvalue()
