"""Container environment as the kubelet builds it: env, valueFrom, envFrom, $(VAR) expansion.

`expand` follows Kubernetes' third_party/forked/golang/expansion: `$(VAR)` is replaced when VAR
is defined, left as is otherwise, and `$$` escapes a `$`.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping
from decimal import ROUND_CEILING, Decimal
from typing import Any

from devcluster.node.quantity import quantity

Obj = dict[str, Any]
Fetch = Callable[[str, str], Awaitable[Obj | None]]
"""(kind, name) -> the ConfigMap or Secret of the pod's namespace, or None."""


class ContainerConfigError(Exception):
    """A referenced key or object is missing: the container waits (CreateContainerConfigError)."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(variables[name] if name in variables else text[i : end + 1])
                    i = end + 1
                    continue
        out.append(text[i])
        i += 1
    return "".join(out)


def field_value(pod: Obj, path: str) -> str:
    """A downward-API field of the pod (fieldRef.fieldPath)."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return str(simple[path] or "")
    for prefix, source in (("metadata.labels", "labels"), ("metadata.annotations", "annotations")):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(meta.get(source, {}).items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(meta.get(source, {}).get(path[len(prefix) + 2 : -2], ""))
    raise ContainerConfigError(f"unsupported fieldRef {path}")


def resource_value(container: Obj, ref: Obj, host_cpus: int, host_memory: int) -> str:
    """resourceFieldRef: limits/requests of the container, defaulting limits to the node's."""
    resource = ref["resource"]
    kind, _, name = resource.partition(".")
    values = container.get("resources", {}).get(kind, {})
    default = {"cpu": Decimal(host_cpus), "memory": Decimal(host_memory)}.get(name, Decimal(0))
    value = quantity(str(values[name])) if name in values else default
    divisor = quantity(str(ref.get("divisor", "1")))
    return str((value / divisor).to_integral_value(rounding=ROUND_CEILING))


async def container_env(
    pod: Obj, container: Obj, fetch: Fetch, *, base: Mapping[str, str], host: tuple[int, int]
) -> dict[str, str]:
    """The environment of one container, in Kubernetes' order and precedence."""
    env = dict(base)
    for source in container.get("envFrom", []):
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        ref = source.get("configMapRef") or source.get("secretRef") or {}
        data = await _data(fetch, kind, ref.get("name", ""), optional=ref.get("optional", False))
        env.update({source.get("prefix", "") + k: v for k, v in data.items()})
    for item in container.get("env", []):
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = expand(item.get("value", ""), env)
            continue
        source = item["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], *host)
        else:
            kind = "ConfigMap" if "configMapKeyRef" in source else "Secret"
            ref = source.get("configMapKeyRef") or source.get("secretKeyRef") or {}
            data = await _data(fetch, kind, ref["name"], optional=ref.get("optional", False))
            if ref["key"] in data:
                env[name] = data[ref["key"]]
            elif not ref.get("optional", False):
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {kind} {ref['name']}"
                )
    return env


async def _data(fetch: Fetch, kind: str, name: str, *, optional: bool) -> dict[str, str]:
    obj = await fetch(kind, name)
    if obj is None:
        if optional:
            return {}
        raise ContainerConfigError(f'{kind.lower()} "{name}" not found')
    if kind == "Secret":
        return {
            k: base64.b64decode(v).decode(errors="replace") for k, v in obj.get("data", {}).items()
        }
    return dict(obj.get("data", {}))
