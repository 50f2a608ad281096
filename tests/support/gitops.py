"""How GitOps tools read our objects: Argo CD's health (our Lua script, run in a real Lua
runtime) and Flux's kstatus (the real cli-utils library, built from the Go module proxy)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import lupa

from tests.support.kstatus import kstatus_of

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
    """(status, message) as Flux computes them: the real cli-utils kstatus library
    (`status.Compute`, built from the Go module proxy: :mod:`tests.support.kstatus`)."""
    found = kstatus_of(obj)
    return found.status, found.message
