"""Quality rules of a Dataset, judged on the column summaries: each failure names the rule and the
value.

Three kinds of check, every failure reported (not just the first), so a user fixes them in one go:

- types: a declared numeric feature (or a `regression` label) that holds text, with the count
  and up to five examples; numbers that are infinite; a categorical feature with more distinct
  values than `validation.maxCategories`;
- the label: at least two distinct values, and for `classification` at least
  `validation.minClassCount` rows per class;
- the Dataset's own rules: `minRows`, `maxNullFraction`, the column rules and schema changes.
"""

from __future__ import annotations

from flywheel.api.dataset import DatasetSpec
from flywheel.data.columns import ColumnTyping
from flywheel.data.profile import LISTED, ColumnSummary, RuleTally
from flywheel.data.schema import ResolvedSchema, schema_changes


def type_failures(typings: dict[str, ColumnTyping], schema: ResolvedSchema) -> list[str]:
    """Columns that must hold numbers and do not (checked before the snapshot is written)."""
    failures = []
    for name in schema.columns:
        typing = typings[name]
        problem = typing.type_failure()
        if problem is not None:
            role = (
                "the label is declared for regression"
                if name == schema.label
                else ("declared numeric")
            )
            failures.append(f"type of {name}: {role}, but {problem}")
    return failures


def validate(
    summaries: dict[str, ColumnSummary],
    schema: ResolvedSchema,
    spec: DatasetSpec,
    previous: ResolvedSchema | None = None,
) -> list[str]:
    """The failed checks, as sentences; empty when the snapshot passes."""
    rules = spec.validation
    failures = value_failures(summaries, schema, rules.max_categories)
    failures += label_failures(summaries[schema.label], spec)
    rows = summaries[schema.label].rows
    if rules.min_rows is not None and rows < rules.min_rows:
        failures.append(f"minRows: {rows} rows, at least {rules.min_rows} required")
    if rules.max_null_fraction is not None and rows:
        for name in schema.columns:
            share = summaries[name].nulls / rows
            if share > rules.max_null_fraction:
                failures.append(
                    f"maxNullFraction: column {name} is {share:.3f} null, at most "
                    f"{rules.max_null_fraction} allowed"
                )
    for rule in rules.rules or ():
        if rule.column not in summaries:
            failures.append(f"rule on {rule.column}: no such column")
    for summary in summaries.values():
        failures += [f for tally in summary.tallies for f in rule_failures(summary, tally)]
    if previous is not None and not rules.allow_schema_change:
        failures += [
            f"schema change: {c} (set validation.allowSchemaChange to accept)"
            for c in schema_changes(previous, schema)
        ]
    return failures


def value_failures(
    summaries: dict[str, ColumnSummary], schema: ResolvedSchema, max_categories: int
) -> list[str]:
    """Infinite numbers, and categorical columns with too many distinct values."""
    failures = []
    for name in schema.columns:
        summary = summaries[name]
        if summary.infinite:
            failures.append(f"type of {name}: {summary.infinite} values are infinite")
        if summary.overflow:
            failures.append(
                f"maxCategories: column {name} has more than {max_categories} distinct values "
                "(exclude it, declare it numeric, or raise validation.maxCategories)"
            )
    return failures


def label_failures(label: ColumnSummary, spec: DatasetSpec) -> list[str]:
    """A label that cannot be learned from: one value, or too few rows of a class."""
    name = label.name
    distinct = len(label.counts) if label.categorical else len(label.distinct)
    if label.rows and label.rows == label.nulls:
        return [f"label {name}: no value in any of the {label.rows} rows"]
    if label.rows and distinct < 2:
        only = (
            next(iter(label.counts), None)
            if label.categorical
            else next(iter(label.distinct), None)
        )
        return [f"label {name}: a single value ({only}) in every row; at least 2 are needed"]
    minimum = spec.validation.min_class_count
    if spec.data_schema.task != "classification" or label.overflow:
        return []
    rare = sorted((c, v) for v, c in label.counts.items() if c < minimum)
    if not rare:
        return []
    listed = ", ".join(f"{v} ({c})" for c, v in rare[:LISTED])
    return [
        f"minClassCount: {len(rare)} classes of {name} have fewer than {minimum} rows: {listed}"
    ]


def rule_failures(summary: ColumnSummary, tally: RuleTally) -> list[str]:
    """The failures of one column rule."""
    name, rule = summary.name, tally.rule
    failures = []
    if (rule.min is not None or rule.max is not None) and not summary.kind.numeric:
        failures.append(f"rule on {name}: min/max need a numeric column, it is {summary.kind}")
    if tally.below:
        failures.append(
            f"min on {name}: {tally.below} values below {rule.min} (smallest {tally.smallest})"
        )
    if tally.above:
        failures.append(
            f"max on {name}: {tally.above} values above {rule.max} (largest {tally.largest})"
        )
    if tally.not_allowed:
        listed = ", ".join(tally.not_allowed_examples)
        failures.append(
            f"allowedValues on {name}: {tally.not_allowed} values not allowed ({listed})"
        )
    if tally.duplicates:
        failures.append(f"unique on {name}: duplicated values ({', '.join(tally.duplicates)})")
    if rule.max_null_fraction is not None and summary.rows:
        share = summary.nulls / summary.rows
        if share > rule.max_null_fraction:
            failures.append(
                f"maxNullFraction on {name}: {share:.3f} null, at most {rule.max_null_fraction}"
            )
    return failures
