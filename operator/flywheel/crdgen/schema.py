"""Pydantic JSON schema → Kubernetes structural OpenAPI v3 schema.

Pydantic emits JSON Schema 2020-12 with `$ref`s, `anyOf` for optionals and `title`s; the API
server wants a structural schema: every node typed and described, no `$ref`, OpenAPI 3.0
exclusive bounds, no `additionalProperties: false`. :func:`structural_schema` bridges the two.
Called by :mod:`flywheel.crdgen.render`; pure, no I/O.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

Schema = dict[str, Any]

_SCALAR_TYPES = {"string", "integer", "number", "boolean"}
_DROPPED_KEYS = {"title", "propertyNames"}


class _CrdJsonSchema(GenerateJsonSchema):
    """Emits the full default of nested models built by a default factory.

    The API server applies nested defaults only when the parent object exists, so a parent whose
    own default is "all defaults" needs a default of its own. It is written out in full (not `{}`)
    because the server checks CEL rules against the default as written, before nested defaults.
    """

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                return value.model_dump(by_alias=True, exclude_none=True, mode="json")
            return NoDefault
        return super().get_default_value(schema)


def model_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of a pydantic model, as it appears in YAML (camelCase)."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdJsonSchema)
    defs = raw.pop("$defs", {})
    return _convert(raw, defs, hint=None)


def _describe(text: str) -> str:
    """Docstrings are wrapped for code; descriptions read better as one paragraph."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", text.strip())]
    return "\n\n".join(p for p in paragraphs if p)


def _resolve(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Inline a `$ref`; the referring node's own keys (description, default) win."""
    name = node["$ref"].rsplit("/", 1)[-1]
    resolved = copy.deepcopy(defs[name])
    siblings = {k: v for k, v in node.items() if k != "$ref"}
    rules = resolved.get("x-kubernetes-validations", []) + siblings.pop(
        "x-kubernetes-validations", []
    )
    resolved.update(siblings)
    if rules:
        resolved["x-kubernetes-validations"] = rules
    return resolved


def _collapse_any_of(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Optional[X] becomes X (an explicit null is pruned by the API server, then defaulted);
    int | str becomes int-or-string; a union of other scalars becomes an untyped value that
    the operator validates."""
    options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
    options = [_resolve(o, defs) if "$ref" in o else o for o in options]
    if len(options) == 1:
        merged = {**options[0], **node}
        if merged.get("default", ...) is None:
            del merged["default"]
        # Optional[int | str]: the remaining option is itself a union (and its rules are kept).
        return _collapse_any_of(merged, defs) if "anyOf" in merged else merged
    types = {o.get("type") for o in options}
    if types == {"integer", "string"}:
        return {**_keep_meta(node, options), "x-kubernetes-int-or-string": True}
    if types <= _SCALAR_TYPES:
        return {**_keep_meta(node, options), "x-kubernetes-preserve-unknown-fields": True}
    raise ValueError(f"cannot express a union of {sorted(map(str, types))} in a structural schema")


_KEPT_KEYS = {"description", "default", "x-kubernetes-validations"}
_STRING_BOUNDS = ("maxLength", "minLength", "pattern")
"""Bounds of the union's string option, kept on the untyped node: the API server applies them
to string values only (and estimates the cost of CEL rules from `maxLength`)."""


def _keep_meta(node: Schema, options: list[Schema]) -> Schema:
    kept = {k: v for k, v in node.items() if k in _KEPT_KEYS and v is not None}
    strings = [o for o in options if o.get("type") == "string"]
    for key in _STRING_BOUNDS:
        if key in node:
            kept[key] = node[key]
        elif len(strings) == 1 and key in strings[0]:
            kept[key] = strings[0][key]
    return kept


def _convert(node: Schema, defs: dict[str, Schema], hint: str | None) -> Schema:
    node = copy.deepcopy(node)
    if "$ref" in node:
        node = _resolve(node, defs)
    if "anyOf" in node:
        node = _collapse_any_of(node, defs)
        if "$ref" in node:
            node = _resolve(node, defs)
    for key in _DROPPED_KEYS:
        node.pop(key, None)
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if "patternProperties" in node:
        # Key patterns have no structural form; the operator validates keys when it parses a spec.
        (value_schema,) = node.pop("patternProperties").values()
        node["additionalProperties"] = value_schema
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[inclusive] = node[bound]
            node[bound] = True
    if (
        node.get("type") == "object"
        and "properties" not in node
        and "additionalProperties" not in node
    ):
        node["x-kubernetes-preserve-unknown-fields"] = True
    if "description" in node:
        node["description"] = _describe(node["description"])
    elif hint:
        node["description"] = hint
    described = node.get("description")
    if "properties" in node:
        node["properties"] = {
            name: _convert(child, defs, hint=None) for name, child in node["properties"].items()
        }
    if isinstance(node.get("items"), dict):
        node["items"] = _convert(node["items"], defs, hint=_item_hint(described))
    if isinstance(node.get("additionalProperties"), dict):
        node["additionalProperties"] = _convert(
            node["additionalProperties"], defs, hint=_item_hint(described)
        )
    return _ordered(node)


_LEADING_KEYS = ("type", "description")
_TRAILING_KEYS = ("properties", "items", "additionalProperties", "x-kubernetes-validations")


def _ordered(node: Schema) -> Schema:
    """Type and description first, children last: the committed YAML reads top-down."""
    middle = sorted(k for k in node if k not in _LEADING_KEYS + _TRAILING_KEYS)
    order = [*_LEADING_KEYS, *middle, *_TRAILING_KEYS]
    return {k: node[k] for k in order if k in node}


def _item_hint(parent: str | None) -> str | None:
    if not parent:
        return None
    first = re.split(r"\.\s+(?=[A-Z])", parent)[0].rstrip(".")
    return f"An entry of: {first[0].lower()}{first[1:]}."


def walk(schema: Schema, path: str = "") -> list[tuple[str, Schema]]:
    """Every node of a structural schema with its dotted path (for tests and checks)."""
    nodes = [(path or ".", schema)]
    for name, child in schema.get("properties", {}).items():
        nodes += walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        nodes += walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        nodes += walk(schema["additionalProperties"], f"{path}{{}}")
    return nodes
