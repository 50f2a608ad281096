"""Kubernetes objects as the API server sends them (plain JSON dicts), and the few accessors
the controllers need.

Our own kinds are parsed into their typed models once, at the edge
(:mod:`flywheel.core.target`); children and other built-in objects (Jobs, Deployments,
pods) stay dicts and are read through these helpers, so a missing field reads as empty instead
of raising.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]
"""A Kubernetes object, or any part of one, as decoded JSON."""


@dataclass(frozen=True)
class ObjectRef:
    """Which object an action is about: its `apiVersion`, `kind`, namespace and name."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"


def meta_of(obj: Obj | None) -> Obj:
    """The object's metadata (empty when absent)."""
    return dict((obj or {}).get("metadata") or {})


def labels_of(obj: Obj | None) -> dict[str, str]:
    """The object's labels."""
    return dict(meta_of(obj).get("labels") or {})


def annotations_of(obj: Obj | None) -> dict[str, str]:
    """The object's annotations."""
    return dict(meta_of(obj).get("annotations") or {})


def status_of(obj: Obj | None) -> Obj:
    """The object's status (empty when absent)."""
    return dict((obj or {}).get("status") or {})


def ref_of(obj: Obj) -> ObjectRef:
    """The reference of an object read from the API."""
    found = meta_of(obj)
    return ObjectRef(
        str(obj.get("apiVersion", "")),
        str(obj.get("kind", "")),
        str(found.get("namespace", "")),
        str(found.get("name", "")),
    )


def controller_of(obj: Obj | None) -> tuple[str, str, str] | None:
    """The controlling owner of an object: (apiVersion, kind, name), or None."""
    for owner in meta_of(obj).get("ownerReferences") or ():
        if owner.get("controller"):
            return str(owner.get("apiVersion")), str(owner.get("kind")), str(owner.get("name"))
    return None


def owned_by(obj: Obj | None, uid: str) -> bool:
    """Whether an owner reference of the object points at this UID."""
    return any(o.get("uid") == uid for o in meta_of(obj).get("ownerReferences") or ())
