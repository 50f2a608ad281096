"""Events the node records about its pods, as the kubelet does (`kubectl describe pod`)."""

from __future__ import annotations

import logging
from typing import Any

from devcluster.node.api import Api
from devcluster.node.status import now_rfc3339

log = logging.getLogger(__name__)
Obj = dict[str, Any]


def render_event(pod: Obj, container: str, node: str, reason: str, message: str) -> Obj:
    """A core/v1 Event about one container of a pod, from the kubelet of `node`."""
    meta, now = pod["metadata"], now_rfc3339()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
            "fieldPath": f"spec.containers{{{container}}}",
        },
        "type": "Normal",
        "reason": reason,
        "message": message,
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def record(api: Api, pod: Obj, container: str, node: str, reason: str, message: str) -> None:
    """Create the Event; a failure is logged, never raised (an Event is not worth a pod)."""
    body = render_event(pod, container, node, reason, message)
    try:
        await api.create(f"/api/v1/namespaces/{pod['metadata']['namespace']}/events", body)
    except Exception as error:
        log.warning("event %s for %s: %s", reason, pod["metadata"]["name"], error)
