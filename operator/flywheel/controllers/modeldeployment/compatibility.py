"""Whether a ModelVersion can replace the one a ModelDeployment serves, for its clients.

Clients of a deployment send the inputs of its signature and read its outputs; a version of
the same model that changes the task (classification ↔ regression), the input features (their
names, order or types) or the output tensors would answer them wrongly or not at all. Such a
version is never rolled out over the serving one (reason `IncompatibleVersion`). New class
labels are compatible: a retrained classifier may learn a class its predecessor never saw.
"""

from __future__ import annotations

from flywheel.core.objects import Obj


def _signature(version: Obj) -> Obj:
    return dict(((version.get("spec") or {}).get("signature")) or {})


def _features(signature: Obj) -> list[str]:
    return [f"{f.get('name')}:{f.get('type')}" for f in signature.get("features") or ()]


def _outputs(signature: Obj) -> list[str]:
    return [f"{o.get('name')}:{o.get('datatype')}" for o in signature.get("outputs") or ()]


def difference(serving: Obj, candidate: Obj) -> str | None:
    """What makes `candidate` incompatible with `serving` (None: compatible)."""
    before, after = _signature(serving), _signature(candidate)
    found = []
    if before.get("task") != after.get("task"):
        found.append(f"task {after.get('task')} instead of {before.get('task')}")
    old, new = _features(before), _features(after)
    if old != new:
        missing = [f for f in old if f not in new]
        added = [f for f in new if f not in old]
        if missing or added:
            parts = [f"without {', '.join(missing[:5])}"] if missing else []
            parts += [f"with new {', '.join(added[:5])}"] if added else []
            found.append("input features " + " and ".join(parts))
        else:
            found.append("input features in another order")
    if _outputs(before) != _outputs(after):
        found.append(
            f"outputs [{', '.join(_outputs(after))}] instead of [{', '.join(_outputs(before))}]"
        )
    return "; ".join(found) if found else None
