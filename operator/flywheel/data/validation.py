"""Quality rules of a Dataset, evaluated on a snapshot: each failure names the rule and the value.

`validate` returns every failed rule (not just the first), so a user fixes them in one go.
"""

from __future__ import annotations

import pandas as pd

from flywheel.api.dataset import ColumnRule, DatasetValidation
from flywheel.data.schema import ResolvedSchema, schema_changes

MAX_LISTED = 5


def validate(
    frame: pd.DataFrame,
    schema: ResolvedSchema,
    rules: DatasetValidation,
    previous: ResolvedSchema | None = None,
) -> list[str]:
    """The failed rules, as sentences; empty when the snapshot passes."""
    failures: list[str] = []
    rows = len(frame)
    if rules.min_rows is not None and rows < rules.min_rows:
        failures.append(f"minRows: {rows} rows, at least {rules.min_rows} required")
    if rules.max_null_fraction is not None and rows:
        for column in schema.columns:
            share = float(frame[column].isna().mean())
            if share > rules.max_null_fraction:
                failures.append(
                    f"maxNullFraction: column {column} is {share:.3f} null, at most "
                    f"{rules.max_null_fraction} allowed"
                )
    for rule in rules.rules or ():
        failures += check_rule(frame, rule)
    if previous is not None and not rules.allow_schema_change:
        failures += [
            f"schema change: {c} (set validation.allowSchemaChange to accept)"
            for c in schema_changes(previous, schema)
        ]
    return failures


def check_rule(frame: pd.DataFrame, rule: ColumnRule) -> list[str]:
    """The failures of one column rule."""
    name = rule.column
    if name not in frame.columns:
        return [f"rule on {name}: no such column"]
    column = frame[name]
    values = column.dropna()
    failures = []
    numeric = pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)
    if (rule.min is not None or rule.max is not None) and not numeric:
        failures.append(f"rule on {name}: min/max need a numeric column, it is {column.dtype}")
    elif numeric and len(values):
        if rule.min is not None and float(values.min()) < rule.min:
            below = int((values < rule.min).sum())
            failures.append(
                f"min on {name}: {below} values below {rule.min} (smallest {values.min()})"
            )
        if rule.max is not None and float(values.max()) > rule.max:
            above = int((values > rule.max).sum())
            failures.append(
                f"max on {name}: {above} values above {rule.max} (largest {values.max()})"
            )
    if rule.allowed_values is not None:
        allowed = set(rule.allowed_values)
        bad = values[~values.astype(str).isin(allowed)].astype(str)
        if len(bad):
            listed = ", ".join(sorted(bad.unique())[:MAX_LISTED])
            failures.append(f"allowedValues on {name}: {len(bad)} values not allowed ({listed})")
    if rule.unique and values.duplicated().any():
        dupes = values[values.duplicated()].astype(str).unique()[:MAX_LISTED]
        failures.append(f"unique on {name}: duplicated values ({', '.join(dupes)})")
    if rule.max_null_fraction is not None and len(column):
        share = float(column.isna().mean())
        if share > rule.max_null_fraction:
            failures.append(
                f"maxNullFraction on {name}: {share:.3f} null, at most {rule.max_null_fraction}"
            )
    return failures
