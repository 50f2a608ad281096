"""Whether a child still looks as the operator last applied it.

Server-side apply of an unchanged apply configuration changes nothing, but it is still a
request; the controllers skip it when every field they own already has the wanted value
(KServe's semantic equality on owned fields, generalised). The live object has more fields than
the apply configuration (defaults, status, other managers' labels): only the configuration's
fields are compared, lists element by element. A field the operator owns that someone edited by
hand (`kubectl scale` of the serving Deployment) differs, and is applied back. Resource
quantities compare by value: the API server stores `0.5` CPU as `500m` and `1024Mi` as `1Gi`.

A field left out of a new configuration cannot be seen that way (it is still there, and still
the operator's, until an apply without it releases it: `replicas` once an HPA owns them), so
every configuration carries its own digest (:func:`stamped`): a new configuration always
differs from the last one applied.
"""

from __future__ import annotations

import hashlib
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

QUANTITY_KEYS = frozenset({"requests", "limits"})
CONFIGURATION = "flywheel.dev/configuration"
"""Annotation: the digest of the apply configuration a child was last applied with."""
_SUFFIXES: dict[str, Decimal | int] = {
    "": 1,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity's value (`500m` -> 0.5), or None when it is not one."""
    found = _QUANTITY.match(str(value)) if isinstance(value, str | int | float) else None
    if found is None or isinstance(value, bool):
        return None
    try:
        return Decimal(found.group(1)) * _SUFFIXES[found.group(2)]
    except InvalidOperation:
        return None


def differs(desired: Any, live: Any, *, quantities: bool = False) -> bool:
    """Whether any field of `desired` is missing from `live` or has another value there."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return True
        return any(
            differs(value, live.get(key), quantities=quantities or key in QUANTITY_KEYS)
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return True
        return any(differs(d, v, quantities=quantities) for d, v in zip(desired, live, strict=True))
    if isinstance(desired, bool) or isinstance(live, bool):
        return desired is not live
    if quantities and quantity(desired) is not None:
        return quantity(desired) != quantity(live)
    if isinstance(desired, int | float) and isinstance(live, str):
        return str(desired) != live
    return bool(desired != live)


def stamped(configuration: dict[str, Any]) -> dict[str, Any]:
    """The apply configuration with its digest as an annotation."""
    digest = hashlib.sha256(json.dumps(configuration, sort_keys=True).encode()).hexdigest()
    meta = dict(configuration.get("metadata") or {})
    meta["annotations"] = {**(meta.get("annotations") or {}), CONFIGURATION: digest[:16]}
    return {**configuration, "metadata": meta}
