"""Column kinds settled over the whole source, and the columns that must hold numbers but do not.

Each batch of a column has a kind of its own (a CSV batch as pandas' parser types it, a Parquet
batch by its type); the column's kind is settled once every batch has been seen, by pandas'
rules for a whole file: `int` when every batch holds integers and no value is missing (integers
with gaps are floats), `float` when every batch holds numbers, `bool` when every batch holds
truth values, `string` otherwise (the values as written). A batch with nothing but missing
values agrees with any kind. A column that must be numeric (a declared numeric feature, a
regression label) and holds text counts its values that are not numbers, with a few examples;
text that is all numbers (a Parquet string column) counts as numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc

from flywheel.data.errors import ParseError

TRUE_TEXT = ("True", "TRUE", "true")
EXAMPLES = 5


class Kind(StrEnum):
    """What a column of the snapshot holds."""

    INT = "int"
    FLOAT = "float"
    BOOL = "bool"
    STRING = "string"

    @property
    def numeric(self) -> bool:
        """Numbers (booleans are not)."""
        return self in (Kind.INT, Kind.FLOAT)

    @property
    def arrow_type(self) -> pa.DataType:
        """The column's type in the snapshot."""
        return {
            Kind.INT: pa.int64(),
            Kind.FLOAT: pa.float64(),
            Kind.BOOL: pa.bool_(),
            Kind.STRING: pa.string(),
        }[self]


def batch_kind(name: str, array: pa.Array) -> Kind | None:
    """The kind of one batch of a column; None when every value is missing."""
    of = array.type
    if array.null_count == len(array):
        return None
    if pa.types.is_integer(of):
        return Kind.INT
    if pa.types.is_floating(of):
        return Kind.FLOAT
    if pa.types.is_boolean(of):
        return Kind.BOOL
    if pa.types.is_nested(of):
        raise ParseError(f"column {name} holds {of} values; only scalar columns can be used")
    return Kind.STRING


@dataclass
class ColumnTyping:
    """What one column's batches have shown so far."""

    name: str
    must_be_number: bool = False
    rows: int = 0
    nulls: int = 0
    seen: set[Kind] = field(default_factory=set)
    not_numbers: int = 0
    examples: list[str] = field(default_factory=list)

    def update(self, array: pa.Array) -> Kind | None:
        """Take one batch of the column into account; the batch's kind."""
        self.rows += len(array)
        self.nulls += array.null_count
        kind = batch_kind(self.name, array)
        text = kind in (Kind.STRING, Kind.BOOL) and self.must_be_number
        present = pc.drop_null(array)
        if text and self._count_not_numbers(present):
            kind = Kind.FLOAT  # text that is all numbers, in a column that must be numeric
        if kind is not None:
            self.seen.add(kind)
        return kind

    def _count_not_numbers(self, present: pa.Array) -> bool:
        """Count the values that are not numbers (booleans, as pandas writes them, are not);
        whether there were none."""
        if pa.types.is_boolean(present.type):
            present = pc.if_else(present, "True", "False")
        else:
            present = pc.cast(present, pa.string())
        wrong = [v for v in pc.unique(present).to_pylist() if not reads_as_number(v)]
        if not wrong:
            return True
        self.not_numbers += int(pc.sum(pc.is_in(present, value_set=pa.array(wrong))).as_py())
        fresh = [v for v in wrong if v not in self.examples]
        self.examples += fresh[: EXAMPLES - len(self.examples)]
        return False

    @property
    def kind(self) -> Kind:
        """The column's kind, once every batch has been seen."""
        if not self.rows:
            return Kind.STRING  # a header without rows says nothing (pandas: text)
        if self.seen == {Kind.INT} and not self.nulls:
            return Kind.INT
        if self.seen <= {Kind.INT, Kind.FLOAT}:  # numbers, with gaps, or nothing but gaps
            return Kind.FLOAT
        if self.seen == {Kind.BOOL}:
            return Kind.BOOL
        return Kind.STRING

    def type_failure(self) -> str | None:
        """Why the column cannot be the number it must be; None when it can."""
        if not self.must_be_number or self.kind.numeric:
            return None
        if not self.not_numbers:
            kinds = ", ".join(sorted(self.seen - {Kind.INT, Kind.FLOAT}))
            return f"it holds {kinds} values, not numbers"
        listed = ", ".join(repr(v) for v in self.examples)
        return f"{self.not_numbers} of {self.rows} values are not numbers ({listed})"


def reads_as_number(text: str) -> bool:
    """Whether a text is a number as the CSV reader takes one (no blanks, no underscores)."""
    if text != text.strip() or "_" in text:
        return False
    try:
        float(text)
    except ValueError:
        return False
    return True
