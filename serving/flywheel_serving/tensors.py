"""Tensors of the Open Inference Protocol v2: datatypes, strict decoding, raw encoding.

One decoded form for every wire: JSON `data` (REST), raw little-endian bytes (the binary tensor
data extension of REST and gRPC's `raw_input_contents`) and gRPC's typed `contents` all become a
:class:`Tensor` whose values are a flat numpy array in the datatype's own type (BYTES: an object
array of `str`, or `None` for a JSON null). Every element is checked against its datatype here,
before anything is compared with the model: JSON booleans only in BOOL, integers in range only in
INT/UINT tensors, numbers only in FP tensors, strings only in BYTES; anything else is a
:class:`BadRequest` naming the input.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel_serving.errors import BadRequest

NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
"""The fixed-size datatypes and their little-endian numpy types (the raw encoding)."""
DATATYPES = frozenset({*NUMPY_TYPES, "BYTES"})
MAX_RANK = 2
"""Tensors are [rows] or [rows, columns]: the models served are tabular."""


@dataclass(frozen=True)
class Tensor:
    """One decoded input tensor: values flat, row-major, checked against datatype and shape."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    values: np.ndarray[Any, Any]

    @property
    def rows(self) -> int:
        """The first dimension."""
        return self.shape[0]

    @property
    def width(self) -> int:
        """Columns per row (1 for a [rows] tensor)."""
        return self.shape[1] if len(self.shape) == 2 else 1


def check_header(
    name: Any, datatype: Any, shape: Any, where: str
) -> tuple[str, str, tuple[int, ...]]:
    """A tensor's name, datatype and shape, checked; `where` names it in errors."""
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{where}: name must be a non-empty string")
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        shown = datatype if isinstance(datatype, str) else type(datatype).__name__
        raise BadRequest(
            f"input {name}: datatype {shown!r} is not one of {', '.join(sorted(DATATYPES))}"
        )
    if (
        not isinstance(shape, (list, tuple))
        or not 1 <= len(shape) <= MAX_RANK
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise BadRequest(f"input {name}: shape must be [rows] or [rows, columns]")
    if math.prod(shape) == 0:
        raise BadRequest(f"input {name}: no values (shape {list(shape)})")
    return name, datatype, tuple(shape)


def from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> Tensor:
    """A tensor from JSON `data`: flat or nested to the shape, elements of the datatype."""
    if not isinstance(data, list):
        raise BadRequest(f"input {name}: data must be a list")
    size = math.prod(shape)
    flat = _flatten(name, data, shape)
    if len(flat) != size:
        raise BadRequest(f"input {name}: {len(flat)} values do not fill shape {list(shape)}")
    if datatype == "BYTES":
        for value in flat:
            if (
                not (value is None or isinstance(value, (str, int, float)))
                or value is True
                or value is False
            ):
                raise BadRequest(f"input {name}: BYTES data must be strings (or null)")
        values = np.empty(size, dtype=object)
        values[:] = flat
        return Tensor(name, datatype, shape, values)
    return Tensor(name, datatype, shape, _numbers(name, datatype, flat))


def _flatten(name: str, data: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """The elements of flat data, or of data nested exactly as the shape says."""
    if not any(isinstance(item, list) for item in data):
        return data
    if len(shape) != 2 or len(data) != shape[0]:
        raise BadRequest(f"input {name}: nested data must match shape {list(shape)}")
    flat: list[Any] = []
    for row in data:
        if not isinstance(row, list) or len(row) != shape[1]:
            raise BadRequest(f"input {name}: nested data must match shape {list(shape)}")
        flat.extend(row)
    return flat


def _numbers(name: str, datatype: str, flat: list[Any]) -> np.ndarray[Any, Any]:
    """Numeric JSON elements as the datatype's numpy type; null stays NaN (FP) for the caller."""
    kinds = {type(v) for v in flat}
    if datatype == "BOOL":
        if kinds != {bool}:
            raise BadRequest(f"input {name}: BOOL data must be true or false")
        return np.array(flat, dtype=np.bool_)
    if bool in kinds or not kinds <= {int, float, type(None)}:
        wanted = "integers" if datatype[0] in "IU" else "numbers"
        raise BadRequest(f"input {name}: {datatype} data must be {wanted}")
    dtype = NUMPY_TYPES[datatype]
    if dtype.kind in "iu":
        if kinds != {int}:
            raise BadRequest(f"input {name}: {datatype} data must be integers")
        info = np.iinfo(dtype)
        low, high = min(flat), max(flat)
        if low < info.min or high > info.max:
            raise BadRequest(
                f"input {name}: {datatype} values must lie in [{info.min}, {info.max}]"
            )
        return np.array(flat, dtype=dtype)
    if type(None) in kinds:
        return np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
    try:
        return np.array(flat, dtype=np.float64)
    except OverflowError:  # an integer beyond float64
        raise BadRequest(f"input {name}: a value is beyond the range of {datatype}") from None


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes | memoryview) -> Tensor:
    """A tensor from its raw bytes (binary extension, gRPC raw contents): little-endian
    fixed-size elements, or BYTES elements each prefixed by a 4-byte little-endian length."""
    size = math.prod(shape)
    if datatype == "BYTES":
        return Tensor(name, datatype, shape, _raw_strings(name, raw, size))
    dtype = NUMPY_TYPES[datatype]
    if len(raw) != size * dtype.itemsize:
        raise BadRequest(
            f"input {name}: {len(raw)} bytes of binary data, shape {list(shape)} of {datatype} "
            f"takes {size * dtype.itemsize}"
        )
    values = np.frombuffer(raw, dtype=dtype)
    if datatype == "BOOL" and values.view(np.uint8).max() > 1:
        raise BadRequest(f"input {name}: BOOL elements must be the bytes 0 or 1")
    return Tensor(name, datatype, shape, values)


def _raw_strings(name: str, raw: bytes | memoryview, size: int) -> np.ndarray[Any, Any]:
    view = memoryview(raw)
    if size * 4 > len(view):  # before allocating: the shape is the client's word
        raise BadRequest(
            f"input {name}: {len(view)} bytes of binary data cannot hold {size} BYTES elements "
            "(4 length bytes each at least)"
        )
    values = np.empty(size, dtype=object)
    offset = 0
    for index in range(size):
        if offset + 4 > len(view):
            raise BadRequest(f"input {name}: binary BYTES data ends before element {index}")
        (length,) = struct.unpack_from("<I", view, offset)
        offset += 4
        if offset + length > len(view):
            raise BadRequest(f"input {name}: binary BYTES element {index} is cut short")
        try:
            values[index] = str(view[offset : offset + length], "utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"input {name}: BYTES element {index} is not UTF-8 text") from None
        offset += length
    if offset != len(view):
        raise BadRequest(f"input {name}: {len(view) - offset} bytes left after {size} elements")
    return values


def from_contents(name: str, datatype: str, shape: tuple[int, ...], contents: Any) -> Tensor:
    """A tensor from gRPC typed contents (`bool_contents`, `int_contents`, ... in the field the
    datatype names, as `InferTensorContents` defines)."""
    size = math.prod(shape)
    if datatype == "BYTES":
        items = list(contents)
        values = np.empty(len(items), dtype=object)
        for index, item in enumerate(items):
            try:
                values[index] = bytes(item).decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"input {name}: BYTES element {index} is not UTF-8 text") from None
    else:
        dtype = NUMPY_TYPES[datatype]
        try:
            values = np.array(contents, dtype=np.float64 if dtype.kind == "f" else dtype)
        except (OverflowError, ValueError):
            raise BadRequest(f"input {name}: a value is beyond the range of {datatype}") from None
    if values.size != size:
        raise BadRequest(f"input {name}: {values.size} values do not fill shape {list(shape)}")
    return Tensor(name, datatype, shape, values.reshape(-1))


def to_raw(datatype: str, array: np.ndarray[Any, Any]) -> bytes:
    """An output tensor's raw bytes (the inverse of :func:`from_raw`)."""
    if datatype == "BYTES":
        parts: list[bytes] = []
        for value in array.reshape(-1).tolist():
            encoded = value if isinstance(value, bytes) else str(value).encode()
            parts += (struct.pack("<I", len(encoded)), encoded)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=NUMPY_TYPES[datatype]).tobytes()
