"""Pod status the kubelet's way, as pure functions of the containers' states.

`pod_phase` follows the kubelet's getPhase; `pod_status` renders phase, conditions, addresses and
container statuses into the shape the API expects. No I/O: the worker in :mod:`pods` calls these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class ContainerRun:
    """What the node knows about one container of a pod."""

    name: str
    image: str
    init: bool = False
    restart_count: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    started: bool = False

    @property
    def running(self) -> bool:
        """Whether the container is running now."""
        return "running" in self.state

    @property
    def exit_code(self) -> int | None:
        """The exit code of the last run, if it terminated."""
        terminated = self.state.get("terminated")
        return None if terminated is None else int(terminated["exitCode"])

    def render(self) -> Obj:
        """The containerStatuses entry."""
        status: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"flywheel-local://{self.image}",
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": self.state,
            "lastState": self.last_state,
        }
        if not self.state.get("waiting") or self.restart_count:
            status["containerID"] = f"flywheel://{self.name}-{self.restart_count}"
        return status


def pod_phase(
    restart_policy: str, inits: list[ContainerRun], containers: list[ContainerRun]
) -> str:
    """Pending, Running, Succeeded or Failed, as the kubelet decides it."""
    for init in inits:
        if init.exit_code == 0:
            continue
        if init.exit_code is not None and restart_policy == "Never":
            return "Failed"
        return "Pending"
    running = sum(c.running for c in containers)
    waiting = sum("waiting" in c.state for c in containers)
    succeeded = sum(c.exit_code == 0 for c in containers)
    failed = sum(c.exit_code not in (None, 0) for c in containers)
    stopped = succeeded + failed
    if waiting and not running and not stopped:
        return "Pending"
    if running or waiting:
        return "Running"
    if restart_policy == "Always":
        return "Running"  # terminated containers are about to restart
    if failed and restart_policy == "Never":
        return "Failed"
    if failed:  # OnFailure: they restart
        return "Running"
    return "Succeeded"


def _condition(type_: str, ok: bool, previous: dict[str, Obj], reason: str = "") -> Obj:
    status = "True" if ok else "False"
    old = previous.get(type_)
    since = old["lastTransitionTime"] if old and old.get("status") == status else now_rfc3339()
    item: Obj = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since,
    }
    if not ok and reason:
        item["reason"] = reason
    return item


def pod_status(
    pod: Obj,
    *,
    inits: list[ContainerRun],
    containers: list[ContainerRun],
    pod_ip: str | None,
    host_ip: str,
    start_time: str,
    sandbox_ready: bool,
    message: str | None = None,
) -> Obj:
    """The pod's full status."""
    previous = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
    phase = pod_phase(pod["spec"].get("restartPolicy", "Always"), inits, containers)
    initialized = all(c.exit_code == 0 for c in inits)
    ready = initialized and all(c.ready for c in containers) and phase == "Running"
    not_ready = "PodCompleted" if phase in ("Succeeded", "Failed") else "ContainersNotReady"
    conditions = [
        _condition("PodReadyToStartContainers", sandbox_ready, previous),
        _condition("Initialized", initialized, previous, "ContainersNotInitialized"),
        _condition("Ready", ready, previous, not_ready),
        _condition("ContainersReady", ready, previous, not_ready),
    ]
    if "PodScheduled" in previous:
        conditions.append(previous["PodScheduled"])
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "qosClass": pod.get("status", {}).get("qosClass", "BestEffort"),
        "containerStatuses": [c.render() for c in containers],
    }
    if inits:
        status["initContainerStatuses"] = [c.render() for c in inits]
    if pod_ip:
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    if message:
        status["message"] = message
    return status
