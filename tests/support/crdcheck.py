"""An offline stand-in for the API server's custom-resource validation, for unit tests.

It applies what kube-apiserver applies to a custom resource, in the same order: strict decoding
(unknown fields), defaulting, OpenAPI schema validation, then the CEL rules (evaluated with
cel-python, transition rules when an old object is given). Messages follow the wording of
k8s.io/apimachinery field errors so that one `# expect:` fragment in an example holds both here and
against the real API server (tests/cluster checks the same examples there).

The Kubernetes CEL libraries the CRDs use are added to cel-python: quantities (`isQuantity`,
`quantity` with `isInteger`, `isGreaterThan`, `compareTo`) on the operator's own parser
(`flywheel.api.checks.parse_quantity`, so only the cluster tests check it against the API
server's) and the list library's `sum`. A rule that fails to evaluate is reported as the API
server reports it: `<error> evaluating rule: <message>`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from flywheel.api.checks import parse_quantity

Schema = dict[str, Any]

_CEL = celpy.Environment()
_PROGRAMS: dict[str, Any] = {}


class _Quantity:
    """A value of the Kubernetes quantity library."""

    def __init__(self, text: Any) -> None:
        found = parse_quantity(str(text))
        if found is None:
            raise ValueError(f"quantities must match the regular expression: {text!r}")
        self.value = found


def _sum(items: Any) -> Any:
    total = celtypes.IntType(0)
    for item in items:
        total = total + item
    return total


_FUNCTIONS: dict[str, Any] = {
    "isQuantity": lambda text: celtypes.BoolType(parse_quantity(str(text)) is not None),
    "quantity": _Quantity,
    "isInteger": lambda q: celtypes.BoolType(q.value == q.value.to_integral_value()),
    "isGreaterThan": lambda q, other: celtypes.BoolType(q.value > other.value),
    "isLessThan": lambda q, other: celtypes.BoolType(q.value < other.value),
    "compareTo": lambda q, other: celtypes.IntType(
        (q.value > other.value) - (q.value < other.value)
    ),
    "sum": _sum,
    # Kubernetes' strings library (ext.Strings): `s.substring(start)` and `(start, end)`.
    "substring": lambda text, start, end=None: celtypes.StringType(
        str(text)[int(start) :] if end is None else str(text)[int(start) : int(end)]
    ),
}


class StrictDecodingError(Exception):
    """The object has fields the schema does not declare (kubectl's default strict validation)."""


def crd_schema(crd: dict[str, Any]) -> Schema:
    """The openAPIV3Schema of the (single) served version of a CRD."""
    (version,) = crd["spec"]["versions"]
    schema: Schema = version["schema"]["openAPIV3Schema"]
    return schema


def validate(schema: Schema, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    """Validate a custom resource like the API server: a list of error messages, empty if valid.

    `obj` is defaulted in place, as the server would store it.
    """
    unknown = list(_unknown_fields(schema, obj, ""))
    if unknown:
        return [f'strict decoding error: unknown field "{path}"' for path in unknown]
    _apply_defaults(schema, obj)
    errors = list(_schema_errors(schema, obj, ""))
    if not errors:
        errors = list(_cel_errors(schema, obj, old, ""))
    return errors


# --- strict decoding ---------------------------------------------------------------------------


def _unknown_fields(schema: Schema, value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields") or not isinstance(value, dict | list):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(schema.get("items"), dict):
                yield from _unknown_fields(schema["items"], item, f"{path}[{i}]")
        return
    properties = schema.get("properties")
    extra = schema.get("additionalProperties")
    for key, child in value.items():
        child_path = f"{path}.{key}" if path else key
        if properties is not None and key in properties:
            yield from _unknown_fields(properties[key], child, child_path)
        elif isinstance(extra, dict):
            yield from _unknown_fields(extra, child, child_path)
        elif path == "metadata" or (properties is None and extra is None):
            continue
        else:
            yield child_path


# --- defaulting --------------------------------------------------------------------------------


def _apply_defaults(schema: Schema, value: Any) -> None:
    if isinstance(value, dict):
        for key, child_schema in schema.get("properties", {}).items():
            if key not in value and "default" in child_schema:
                value[key] = copy.deepcopy(child_schema["default"])
            if key in value:
                _apply_defaults(child_schema, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for child in value.values():
                _apply_defaults(extra, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            _apply_defaults(schema["items"], item)


# --- OpenAPI schema ----------------------------------------------------------------------------

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    for name, python_type in _JSON_TYPES.items():
        if isinstance(value, python_type):
            return name
    return "null"


def _has_type(value: Any, expected: str) -> bool:
    actual = _type_name(value)
    if expected == "number":
        return actual in {"integer", "number"}
    if expected == "integer" and actual == "number":
        return float(value).is_integer()
    return actual == expected


def _show(value: Any) -> str:
    """How apimachinery prints a bad value: strings quoted, numbers bare."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def _num(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _schema_errors(schema: Schema, value: Any, path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            yield (
                f"{path}: Invalid value: {_show(value)}: {path} in body must be of type "
                f"integer or string"
            )
            return
        yield from _bound_errors(schema, value, path)
        return
    expected = schema.get("type")
    if expected is None:
        # An untyped value (x-kubernetes-preserve-unknown-fields): bounds apply by its own type.
        yield from _bound_errors(schema, value, path)
        return
    if not _has_type(value, expected):
        actual = _type_name(value)
        yield (
            f'{path}: Invalid value: "{actual}": {path} in body must be of type {expected}: '
            f'"{actual}"'
        )
        return
    if "enum" in schema and value not in schema["enum"]:
        supported = ", ".join(json.dumps(v) for v in schema["enum"])
        yield f"{path}: Unsupported value: {json.dumps(value)}: supported values: {supported}"
    yield from _bound_errors(schema, value, path)
    if expected == "object":
        yield from _object_errors(schema, value, path)
    elif expected == "array":
        yield from _array_errors(schema, value, path)


def _bound_errors(schema: Schema, value: Any, path: str) -> Iterator[str]:
    """Like kube-openapi: the first failing bound of a value only."""
    for error in _all_bound_errors(schema, value, path):
        yield error
        return


def _all_bound_errors(schema: Schema, value: Any, path: str) -> Iterator[str]:
    invalid = f"{path}: Invalid value: {_show(value)}: {path} in body"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema:
            low = schema["minimum"]
            if schema.get("exclusiveMinimum") and value <= low:
                yield f"{invalid} should be greater than {_num(low)}"
            elif value < low:
                yield f"{invalid} should be greater than or equal to {_num(low)}"
        if "maximum" in schema:
            high = schema["maximum"]
            if schema.get("exclusiveMaximum") and value >= high:
                yield f"{invalid} should be less than {_num(high)}"
            elif value > high:
                yield f"{invalid} should be less than or equal to {_num(high)}"
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield f"{path}: Too long: may not be more than {schema['maxLength']} bytes"
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield f"{invalid} should be at least {schema['minLength']} chars long"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield f"{invalid} should match '{schema['pattern']}'"


def _object_errors(schema: Schema, value: dict[str, Any], path: str) -> Iterator[str]:
    for name in schema.get("required", []):
        if name not in value:
            yield f"{_join(path, name)}: Required value"
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        yield f"{path}: Too many: {len(value)}: must have at most {schema['maxProperties']} items"
    properties = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for key, child in value.items():
        if key in properties:
            yield from _schema_errors(properties[key], child, _join(path, key))
        elif isinstance(extra, dict):
            yield from _schema_errors(extra, child, _join(path, key))


def _array_errors(schema: Schema, value: list[Any], path: str) -> Iterator[str]:
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        yield f"{path}: Too many: {len(value)}: must have at most {schema['maxItems']} items"
    if "minItems" in schema and len(value) < schema["minItems"]:
        yield (
            f"{path}: Invalid value: {len(value)}: {path} in body should have at least "
            f"{schema['minItems']} items"
        )
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            yield from _schema_errors(items, item, f"{path}[{i}]")
    if schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen: set[str] = set()
        for i, item in enumerate(value):
            key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
            if key in seen:
                yield f"{path}[{i}]: Duplicate value: {key}"
            seen.add(key)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


# --- CEL -----------------------------------------------------------------------------------------


def _program(rule: str) -> Any:
    if rule not in _PROGRAMS:
        _PROGRAMS[rule] = _CEL.program(_CEL.compile(rule), functions=_FUNCTIONS)
    return _PROGRAMS[rule]


def evaluate_rule(rule: str, value: Any, schema: Schema | None = None) -> bool | str:
    """One CEL rule on `self` = value (typed by `schema` as the API server types it): its
    verdict, or the evaluation error's text."""
    activation = {"self": json_to_cel(_typed(schema or {}, value))}
    try:
        result = _program(rule).evaluate(activation)
    except CELEvalError as error:
        result = error
    return str(result.args[0]) if isinstance(result, CELEvalError) else bool(result)


def _typed(schema: Schema, value: Any) -> Any:
    """JSON as the API server hands it to CEL: `type: number` is always a double."""
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {
            k: _typed(properties.get(k) or (extra if isinstance(extra, dict) else {}), v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items")
        return [_typed(items if isinstance(items, dict) else {}, v) for v in value]
    if schema.get("type") == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _cel_errors(schema: Schema, value: Any, old: Any, path: str) -> Iterator[str]:
    for rule in schema.get("x-kubernetes-validations", []):
        transition = "oldSelf" in rule["rule"]
        if transition and old is None:
            continue
        activation = {"self": json_to_cel(_typed(schema, value))}
        if transition:
            activation["oldSelf"] = json_to_cel(_typed(schema, old))
        try:
            result = _program(rule["rule"]).evaluate(activation)
        except CELEvalError as error:
            result = error
        if isinstance(result, CELEvalError):
            kind = schema.get("type", "object")
            yield (
                f'{path or "<root>"}: Invalid value: "{kind}": {result.args[0]} evaluating rule: '
                f"{rule['message']}"
            )
        elif not bool(result):
            where = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
            kind = "string" if rule.get("fieldPath") else schema.get("type", "object")
            yield f'{where or "<root>"}: Invalid value: "{kind}": {rule["message"]}'
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, child in value.items():
            child_schema = properties.get(key) or (extra if isinstance(extra, dict) else None)
            if child_schema is not None:
                old_child = old.get(key) if isinstance(old, dict) else None
                yield from _cel_errors(child_schema, child, old_child, _join(path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            # Transition rules under lists correlate only for listType=map; old items are skipped.
            yield from _cel_errors(schema["items"], item, None, f"{path}[{i}]")
