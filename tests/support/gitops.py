"""How GitOps tools read our objects: Argo CD's health (our Lua script, run in a real Lua
runtime) and Flux's kstatus (a port of cli-utils' `status.Compute` for custom resources)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import lupa

HEALTH_LUA = Path("examples/gitops/argocd/health.lua")


@cache
def _runtime() -> Any:
    return lupa.LuaRuntime(unpack_returned_tuples=True)


def argocd_health(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) as Argo CD computes them with our script: `obj` is a global there."""
    lua = _runtime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    script = HEALTH_LUA.read_text()
    result = lua.execute(script)
    return str(result["status"]), str(result["message"] or "")


def kstatus(obj: dict[str, Any]) -> tuple[str, str]:
    """(status, message) by kstatus's generic rules, in its order (cli-utils
    pkg/kstatus/status/status.go and generic.go): Terminating, a generation not observed yet,
    Reconciling=True, Stalled=True, then Ready, else Current."""
    meta, status = obj.get("metadata", {}), obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating", "Resource scheduled for deletion"
    observed = status.get("observedGeneration")
    if observed is not None and observed != meta.get("generation"):
        return "InProgress", "LatestGenerationNotObserved"
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    for type_, result in (("Reconciling", "InProgress"), ("Stalled", "Failed")):
        found = conditions.get(type_)
        if found and found.get("status") == "True":
            return result, str(found.get("message", ""))
    ready = conditions.get("Ready")
    if ready is not None:
        if ready.get("status") == "True":
            return "Current", str(ready.get("message", ""))
        return "InProgress", str(ready.get("message", ""))
    return "Current", "Resource is current"
