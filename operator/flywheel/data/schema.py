"""The resolved schema of a snapshot: label, features with types, and the columns dropped.

The Dataset's `schema` may name everything, or nothing: the label then defaults to a column named
`target` or `label`, else the last column; numbers are numeric features and everything else is
categorical. The resolved schema is written as `schema.json` next to the snapshot, and compared
with the previous version's to detect schema changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import pandas as pd

from flywheel.api.dataset import DatasetSchema
from flywheel.data.errors import ParseError

FeatureType = Literal["numeric", "categorical"]
LABEL_NAMES = ("target", "label")


@dataclass(frozen=True)
class Feature:
    """A model input column and its type."""

    name: str
    type: FeatureType


@dataclass(frozen=True)
class ResolvedSchema:
    """What every column of the snapshot is."""

    label: str
    label_type: FeatureType
    features: tuple[Feature, ...]
    dropped: tuple[str, ...]

    @property
    def columns(self) -> list[str]:
        """The snapshot's columns in order: features, then the label."""
        return [f.name for f in self.features] + [self.label]

    def to_json(self) -> dict[str, Any]:
        """The `schema.json` document."""
        return {"format": "flywheel.dev/schema/v1", **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedSchema:
        """Read a `schema.json` document."""
        return cls(
            label=data["label"],
            label_type=data["label_type"],
            features=tuple(Feature(f["name"], f["type"]) for f in data["features"]),
            dropped=tuple(data.get("dropped", ())),
        )


def column_type(series: pd.Series) -> FeatureType:
    """Numbers (not booleans) are numeric; everything else is categorical."""
    numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
    return "numeric" if numeric else "categorical"


def resolve_schema(frame: pd.DataFrame, declared: DatasetSchema) -> ResolvedSchema:
    """Apply the declared schema to the frame's columns, inferring what is not declared."""
    columns = [str(c) for c in frame.columns]
    missing = [
        c
        for c in [declared.label, *(f.name for f in declared.features or [])]
        if c and c not in columns
    ]
    if missing:
        found, absent = ", ".join(columns), ", ".join(missing)
        raise ParseError(f"declared columns not in the data: {absent} (columns: {found})")
    label = declared.label or next((c for c in LABEL_NAMES if c in columns), columns[-1])
    excluded = set(declared.exclude or ())
    if declared.features:
        features = tuple(Feature(f.name, f.type) for f in declared.features)
    else:
        features = tuple(
            Feature(c, column_type(frame[c])) for c in columns if c != label and c not in excluded
        )
    if not features:
        raise ParseError("the data has no feature columns besides the label")
    used = {f.name for f in features} | {label}
    return ResolvedSchema(
        label=label,
        label_type=_label_type(frame[label]),
        features=features,
        dropped=tuple(c for c in columns if c not in used),
    )


def _label_type(series: pd.Series) -> FeatureType:
    """Integer or non-numeric labels with few distinct values are classes; the rest is a value."""
    if column_type(series) == "categorical":
        return "categorical"
    is_integer = pd.api.types.is_integer_dtype(series) or bool(
        series.dropna().apply(float.is_integer).all() if len(series.dropna()) else False
    )
    return "categorical" if is_integer and series.nunique(dropna=True) <= 50 else "numeric"


def schema_changes(previous: ResolvedSchema, current: ResolvedSchema) -> list[str]:
    """Human-readable differences between two versions' schemas."""
    changes = []
    if previous.label != current.label:
        changes.append(f"label changed from {previous.label} to {current.label}")
    old = {f.name: f.type for f in previous.features}
    new = {f.name: f.type for f in current.features}
    changes += [f"feature {n} removed" for n in old if n not in new]
    changes += [f"feature {n} added" for n in new if n not in old]
    changes += [
        f"feature {n} changed from {old[n]} to {new[n]}"
        for n in new
        if n in old and old[n] != new[n]
    ]
    return changes
