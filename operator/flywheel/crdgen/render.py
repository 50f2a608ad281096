"""Render a :class:`~flywheel.api.kinds.Kind` into a CustomResourceDefinition document.

Pure: `render_crd(kind) -> dict`. `python -m flywheel.crdgen` writes the result to `crds/`.
"""

from __future__ import annotations

from typing import Any

from flywheel.api.common import API_GROUP, API_VERSION
from flywheel.api.kinds import CATEGORY, Kind
from flywheel.crdgen.schema import Schema, model_schema

GENERATED_BY = "flywheel.crdgen (make manifests); do not edit by hand"


def render_object_schema(kind: Kind) -> Schema:
    """The `openAPIV3Schema` of a kind: apiVersion, kind, metadata, spec and status."""
    spec = model_schema(kind.spec)
    spec["description"] = kind.spec.__doc__ and " ".join(kind.spec.__doc__.split())
    if kind.spec_rules:
        spec["x-kubernetes-validations"] = [
            *spec.get("x-kubernetes-validations", []),
            *kind.spec_rules,
        ]
    status = model_schema(kind.status)
    status["description"] = " ".join((kind.status.__doc__ or "").split())
    root: Schema = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "The versioned schema of this object: flywheel.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": f"The kind: {kind.kind}."},
            # The API server refuses anything but a bare type here (even a description).
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }
    # Rules at the root may read metadata.name (the schema of metadata itself must stay bare).
    rules = [kind.name_rule.cel()] if kind.name_rule is not None else []
    rules += [dict(r) for r in kind.root_rules]
    if rules:
        root["x-kubernetes-validations"] = rules
    return root


def render_crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = dict(kind.scale)
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "jsonPath": c.json_path,
            **({"description": c.description} if c.description else {}),
            **({"priority": c.priority} if c.priority else {}),
        }
        for c in kind.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": kind.crd_name,
            "annotations": {"flywheel.dev/generated-by": GENERATED_BY},
            "labels": {"app.kubernetes.io/part-of": "flywheel"},
        },
        "spec": {
            "group": API_GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": render_object_schema(kind)},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }
