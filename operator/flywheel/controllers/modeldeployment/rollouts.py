"""Reading a serving Deployment's rollout and its pods, as `kubectl rollout status` does.

Pure functions over apps/v1 Deployment and v1 Pod objects: whether the Deployment's current
template is fully rolled out, still progressing, or past its `progressDeadlineSeconds`; and, for
a failed rollout, the reason its pods give (a crash, an image that cannot start, or the model
server's own readiness answer such as `ArtifactDigestMismatch`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from flywheel.core.conditions import Finding, raw_condition
from flywheel.core.objects import Obj
from flywheel.core.serving import VERSION_LABEL

State = Literal["Complete", "Progressing", "Failed"]
_READINESS_REASON = re.compile(r"\(([A-Za-z][A-Za-z0-9]*)\)")


@dataclass(frozen=True)
class Rollout:
    """Where a Deployment's rollout stands."""

    state: State
    message: str
    replicas: int
    ready: int
    available: int
    wanted: int = 0
    """The Deployment's desired replicas."""


def rollout(deployment: Obj) -> Rollout:
    """The rollout of the Deployment's current template."""
    spec, status = deployment.get("spec", {}), deployment.get("status", {})
    wanted = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    current = int(status.get("replicas") or 0)
    ready = int(status.get("readyReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)

    def at(state: State, message: str) -> Rollout:
        return Rollout(state, message, current, ready, available, wanted)

    if int(status.get("observedGeneration") or 0) < int(
        deployment["metadata"].get("generation", 1)
    ):
        return at("Progressing", "waiting for the Deployment controller to see the new template")
    progressing = raw_condition(status, "Progressing")
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        return at("Failed", str(progressing.get("message", "progress deadline exceeded")))
    if updated < wanted:
        return at("Progressing", f"{updated} of {wanted} pods updated")
    if current > updated:
        return at("Progressing", f"{current - updated} old pods still running")
    if available < updated:
        return at("Progressing", f"{available} of {updated} updated pods ready")
    return at("Complete", f"{available} of {wanted} pods ready")


def not_ready_pods(pods: list[Obj], version: int) -> list[Obj]:
    """Pods of one version that are running down no deletion path and are not ready."""
    return [
        p
        for p in pods
        if p.get("metadata", {}).get("labels", {}).get(VERSION_LABEL) == str(version)
        and not p.get("metadata", {}).get("deletionTimestamp")
        and raw_condition(p.get("status"), "Ready").get("status") != "True"
    ]


def pod_failure(pods: list[Obj], readiness: dict[str, str]) -> Finding:
    """Why these (not ready) pods fail, from their container states, else from the model
    server's readiness answer (`readiness`: pod name -> response body)."""
    for pod in pods:
        name = pod["metadata"]["name"]
        for container in pod.get("status", {}).get("containerStatuses") or ():
            state, last = container.get("state", {}), container.get("lastState", {})
            waiting, terminated = state.get("waiting"), state.get("terminated")
            previous = last.get("terminated") or {}
            if waiting and waiting.get("reason") not in (None, "ContainerCreating"):
                detail = previous.get("message") or waiting.get("message") or ""
                code = previous.get("exitCode")
                oom = ", OOMKilled" if previous.get("reason") == "OOMKilled" else ""
                suffix = f" (last exit code {code}{oom})" if code is not None else ""
                return Finding(waiting["reason"], f"pod {name}: {detail}".strip() + suffix)
            if terminated:
                reason = terminated.get("reason") or "Terminated"
                return Finding(reason, f"pod {name}: {terminated.get('message') or reason}")
        scheduled = raw_condition(pod.get("status"), "PodScheduled")
        if scheduled.get("status") == "False":
            why = scheduled.get("reason") or "Unschedulable"
            return Finding(str(why), f"pod {name}: {scheduled.get('message') or why}")
        text = readiness.get(name)
        if text:
            message = _error_text(text)
            found = _READINESS_REASON.search(message)
            return Finding(found.group(1) if found else "NotReady", f"pod {name}: {message}")
    if pods:
        return Finding("NotReady", f"pod {pods[0]['metadata']['name']} never became ready")
    return Finding("ProgressDeadlineExceeded", "no pod of the new version was created")


def _error_text(body: str) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:1000]
    return str(parsed.get("error", body))[:1000] if isinstance(parsed, dict) else body[:1000]
