"""The resolved schema of a snapshot: label, features with types, and the columns dropped.

The Dataset's `schema` may name everything, or nothing: the label then defaults to a column named
`target` or `label`, else the last column; numbers are numeric features and everything else is
categorical. The resolved schema is written as `schema.json` next to the snapshot, and compared
with the previous version's to detect schema changes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from flywheel.api.dataset import DatasetSchema
from flywheel.data.columns import Kind
from flywheel.data.errors import ParseError

FeatureType = Literal["numeric", "categorical"]
LABEL_NAMES = ("target", "label")
SMALL_DISTINCT = 50


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


def feature_type(kind: Kind) -> FeatureType:
    """Numbers (not booleans) are numeric; everything else is categorical."""
    return "numeric" if kind.numeric else "categorical"


def used_columns(names: list[str], declared: DatasetSchema) -> tuple[str, list[str]]:
    """The label and the feature columns (in source order unless declared), before their types
    are known; ParseError when a declared column is not in the data."""
    missing = [
        c
        for c in [declared.label, *(f.name for f in declared.features or [])]
        if c and c not in names
    ]
    if missing:
        found, absent = ", ".join(names), ", ".join(missing)
        raise ParseError(f"declared columns not in the data: {absent} (columns: {found})")
    label = declared.label or next((c for c in LABEL_NAMES if c in names), names[-1])
    excluded = set(declared.exclude or ())
    if declared.features:
        features = [f.name for f in declared.features]
    else:
        features = [c for c in names if c != label and c not in excluded]
    if not features:
        raise ParseError("the data has no feature columns besides the label")
    return label, features


def must_be_numbers(label: str, declared: DatasetSchema) -> set[str]:
    """Columns whose every value must be a number: declared numeric features, and the label
    when the task is regression."""
    numeric = {f.name for f in declared.features or () if f.type == "numeric"}
    return numeric | {label} if declared.task == "regression" else numeric


def resolve_schema(
    names: list[str], kinds: dict[str, Kind], declared: DatasetSchema
) -> ResolvedSchema:
    """Apply the declared schema to the source's columns (`kinds`: those of the label and the
    features), inferring what is not declared.

    The label's type is provisional for a numeric label without a declared task: see
    :func:`label_type`, decided once its values have been seen."""
    label, feature_names = used_columns(names, declared)
    declared_types = {f.name: f.type for f in declared.features or ()}
    features = tuple(
        Feature(n, declared_types.get(n) or feature_type(kinds[n])) for n in feature_names
    )
    if declared.task is not None:
        provisional: FeatureType = "categorical" if declared.task == "classification" else "numeric"
    else:
        provisional = feature_type(kinds[label])
    used = {*feature_names, label}
    return ResolvedSchema(
        label=label,
        label_type=provisional,
        features=features,
        dropped=tuple(c for c in names if c not in used),
    )


def label_type(kind: Kind, integral: bool, distinct: int) -> FeatureType:
    """An undeclared label's type: integers (or whole floats) with few distinct values, and
    anything not numeric, are classes; the rest is a value to regress."""
    if not kind.numeric:
        return "categorical"
    return "categorical" if integral and distinct <= SMALL_DISTINCT else "numeric"


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
