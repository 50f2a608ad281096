"""Resource limits of the local node's pods: cgroup v1 groups per cluster, pod and container.

Each container run gets, in the memory and pids hierarchies (and in the cpu one when it has a
CPU limit), the group `<agent's own group>/flywheel/<slot>/<pod uid>/<container>-<restart>`.
Nesting under the agent's own group keeps pods inside whatever the host put the agent in;
`<slot>` is the cluster's host-wide claimed slot (its pod network index), so no two clusters
share a group.

- memory: `memory.limit_in_bytes` is `limits.memory` (these hosts have no swap). The kernel's
  OOM killer acts inside the group and counts in `memory.oom_control` (`oom_kill`); a
  container that exits non-zero after such a kill is `OOMKilled`, as containerd reports it.
- cpu: a container with `limits.cpu` gets a CFS quota of limit x 100 ms per 100 ms period and
  `cpu.shares` from its request (the kubelet's formula). Containers without a CPU limit stay
  in the agent's cpu group, weighed like any host process.
- pids: the pod's group has `pids.max` (`DEFAULT_POD_PIDS`; `FLYWHEEL_NODE_POD_PIDS_LIMIT`
  overrides it, `0` for none), counting every process and thread of the pod.

The container process joins its groups before its command runs: the host command line is
prefixed by a `sh` that writes its own pid into each group's `cgroup.procs` and then execs it,
so every child is born inside. When a run ends, whatever is left in its groups is killed and
the groups are removed; the pod's groups go at its teardown, the cluster's when the agent starts
and stops, and in the cluster's `down()` when the agent died (the agent records its groups in
`cgroups.json` in its directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster.node.quantity import cpu_millis, memory_bytes

log = logging.getLogger(__name__)

CONTROLLERS = ("memory", "cpu", "pids")
DEFAULT_POD_PIDS = 4096
"""Processes and threads per pod (the kubelet's podPidsLimit is unlimited by default; a bound
keeps a runaway pod from exhausting the host's 32768 pids)."""
PIDS_ENV = "FLYWHEEL_NODE_POD_PIDS_LIMIT"
CFS_PERIOD_US = 100_000
RECORD = "cgroups.json"
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


class CgroupError(OSError):
    """A container's groups could not be created or configured (the container fails to
    start)."""


def pod_pids_limit(environ: dict[str, str] | None = None) -> int | None:
    """The per-pod pids limit: `FLYWHEEL_NODE_POD_PIDS_LIMIT` (`0` or `max`: none), else the
    default."""
    text = (environ if environ is not None else dict(os.environ)).get(PIDS_ENV, "").strip()
    if not text:
        return DEFAULT_POD_PIDS
    if text == "max" or int(text) <= 0:
        return None
    return int(text)


def cfs_quota(millis: int) -> int:
    """The CFS quota (µs per 100 ms period) of a CPU limit, at least 1 ms as the kubelet's."""
    return max(1000, millis * CFS_PERIOD_US // 1000)


def cpu_shares(millis: int) -> int:
    """`cpu.shares` of a CPU request (the kubelet's MilliCPUToShares)."""
    return min(262144, max(2, millis * 1024 // 1000))


@dataclass(frozen=True)
class Limits:
    """What a container's spec asks the kernel to enforce."""

    memory: int | None = None
    cpu: int | None = None
    """The CPU limit in millicores."""
    cpu_request: int | None = None

    @classmethod
    def of(cls, container: dict[str, Any]) -> Limits:
        """The limits of a container spec (ValueError on a malformed quantity)."""
        resources = container.get("resources") or {}
        limits, requests = resources.get("limits") or {}, resources.get("requests") or {}
        memory = memory_bytes(str(limits["memory"])) if "memory" in limits else None
        cpu = cpu_millis(str(limits["cpu"])) if "cpu" in limits else None
        request = cpu_millis(str(requests["cpu"])) if "cpu" in requests else cpu
        return cls(memory, cpu, request)

    def files(self) -> dict[str, dict[str, str]]:
        """Per controller the container joins, the files to write."""
        out: dict[str, dict[str, str]] = {"memory": {}, "pids": {}}
        if self.memory is not None:
            out["memory"]["memory.limit_in_bytes"] = str(self.memory)
        if self.cpu is not None:
            out["cpu"] = {
                "cpu.cfs_period_us": str(CFS_PERIOD_US),
                "cpu.cfs_quota_us": str(cfs_quota(self.cpu)),
                "cpu.shares": str(cpu_shares(self.cpu_request or self.cpu)),
            }
        return out


@dataclass(frozen=True)
class Usage:
    """What one container run used, read when it ended."""

    oom_kills: int = 0
    peak_bytes: int | None = None
    charged_bytes: int | None = None
    """Still charged when the run ended (mostly page cache: the peak includes it)."""
    throttled: int | None = None
    """CFS periods in which the run was throttled."""

    def describe(self, limits: Limits) -> str:
        """One log line's worth."""
        mib = 1 << 20
        parts = []
        if self.peak_bytes is not None:
            limit = f"limit {limits.memory // mib} MiB" if limits.memory else "no limit"
            charged = (self.charged_bytes or 0) // mib
            parts.append(
                f"peak memory {self.peak_bytes // mib} MiB ({limit}; {charged} MiB, mostly "
                "page cache, still charged at exit)"
            )
        if self.throttled is not None:
            parts.append(f"throttled in {self.throttled} periods (limit {limits.cpu}m)")
        if self.oom_kills:
            parts.append(f"{self.oom_kills} OOM kill(s)")
        return ", ".join(parts)


@dataclass
class ContainerCgroup:
    """The groups of one container run."""

    groups: dict[str, Path] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run by a process that first joins the groups (unchanged without groups)."""
        if not self.groups:
            return argv
        procs = [str(group / "cgroup.procs") for group in self.groups.values()]
        return ["/bin/sh", "-c", _JOIN, "cgroup-join", *procs, "--", *argv]

    def oom_kills(self) -> int:
        """How many processes the OOM killer ended in the memory group so far."""
        memory = self.groups.get("memory")
        if memory is None:
            return 0
        with contextlib.suppress(OSError, ValueError):
            for line in (memory / "memory.oom_control").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    async def ended(self, code: int, what: str) -> bool:
        """The run's process exited with `code` (negative: killed by that signal): log its
        usage, remove its groups; True when it was OOM-killed."""
        usage = await asyncio.to_thread(self.finish, killed=code == -signal.SIGKILL)
        log.info("%s exited %s: %s", what, code, usage.describe(self.limits))
        return bool(usage.oom_kills) and code != 0

    def finish(self, *, killed: bool) -> Usage:
        """Read what the run used, kill what is left of it and remove its groups. `killed`: its
        process died of SIGKILL (the kernel counts an OOM kill just after sending it)."""
        oom_kills = self.oom_kills()
        if killed and not oom_kills and "memory" in self.groups:
            time.sleep(0.05)
            oom_kills = self.oom_kills()
        memory, cpu = self.groups.get("memory"), self.groups.get("cpu")
        usage = Usage(
            oom_kills=oom_kills,
            peak_bytes=_number(memory / "memory.max_usage_in_bytes") if memory else None,
            charged_bytes=_number(memory / "memory.usage_in_bytes") if memory else None,
            throttled=_stat(cpu / "cpu.stat", "nr_throttled") if cpu else None,
        )
        for group in self.groups.values():
            remove_tree(group)
        return usage


class PodCgroups:
    """The groups of one pod: the parent of its containers' groups."""

    def __init__(self, groups: dict[str, Path], pids: int | None) -> None:
        self.groups = groups
        self.pids = pids
        self.removed = False

    def container(self, name: str, spec: dict[str, Any]) -> ContainerCgroup:
        """Create the groups of one container run with its limits (the pod's groups first)."""
        try:
            limits = Limits.of(spec)
        except ValueError as error:
            raise CgroupError(f"container {spec.get('name')}: {error}") from error
        wanted = limits.files()
        created: dict[str, Path] = {}
        try:
            for controller, pod_group in self.groups.items():
                if controller not in wanted:
                    continue
                with contextlib.suppress(FileExistsError):  # containers start side by side
                    pod_group.mkdir()
                    if controller == "pids" and self.pids is not None:
                        (pod_group / "pids.max").write_text(str(self.pids))
                group = pod_group / name
                remove_tree(group)  # an earlier agent's, for a pod run again
                group.mkdir()
                created[controller] = group
                for filename, value in wanted[controller].items():
                    (group / filename).write_text(value)
            if self.removed:  # the pod was torn down while this ran (in a thread)
                raise OSError("the pod is being removed")
        except OSError as error:
            for group in created.values():
                remove_tree(group)
            raise CgroupError(f"cannot set up the cgroups of {name}: {error}") from error
        return ContainerCgroup(created, limits)

    def remove(self, what: str = "") -> None:
        """Kill whatever still runs in the pod's groups and remove them (for good: no
        container group is created afterwards); log the pod's peak memory as `what`."""
        self.removed = True
        memory = self.groups.get("memory")
        peak = _number(memory / "memory.max_usage_in_bytes") if memory else None
        if peak is not None and what:
            log.info("%s: peak memory of the pod %d MiB", what, peak >> 20)
        for group in self.groups.values():
            remove_tree(group)


class NodeCgroups:
    """One cluster's groups, `<own group>/flywheel/<slot>` per controller, and their record."""

    def __init__(
        self,
        slot: int,
        record: Path | None,
        *,
        groups: dict[str, Path] | None = None,
        pod_pids: int | None = DEFAULT_POD_PIDS,
    ) -> None:
        own = own_groups() if groups is None else groups
        self.bases = {c: base / "flywheel" / str(slot) for c, base in own.items()}
        self.record = record
        self.pod_pids = pod_pids

    @classmethod
    def disabled(cls) -> NodeCgroups:
        """No enforcement: containers run in the agent's groups."""
        return cls(0, None, groups={})

    def setup(self) -> None:
        """Remove what an earlier agent of this cluster left, then create and record the
        cluster's groups."""
        self.remove()
        if not self.bases:
            log.warning("no cgroup v1 memory/cpu/pids hierarchy: resource limits not enforced")
            return
        for base in self.bases.values():
            for _ in range(5):  # another cluster may remove the shared parent meanwhile
                with contextlib.suppress(FileNotFoundError):
                    base.mkdir(parents=True, exist_ok=True)
                    break
        if self.record is not None:
            self.record.parent.mkdir(parents=True, exist_ok=True)
            self.record.write_text(json.dumps([str(b) for b in self.bases.values()]))

    def remove(self) -> None:
        """Kill whatever still runs in the cluster's groups (and in those an earlier agent of
        the cluster recorded) and remove them."""
        for base in {*recorded(self.record), *self.bases.values()}:
            remove_cluster_group(base)
        if self.record is not None:
            self.record.unlink(missing_ok=True)

    def pod(self, uid: str) -> PodCgroups:
        """The groups of one pod (created with its first container)."""
        return PodCgroups({c: base / uid for c, base in self.bases.items()}, self.pod_pids)


def recorded(record: Path | None) -> list[Path]:
    """The cluster groups an agent recorded (none when there is no readable record)."""
    if record is None:
        return []
    try:
        return [Path(p) for p in json.loads(record.read_text())]
    except (OSError, ValueError):
        return []


def remove_recorded(record: Path) -> None:
    """Remove the groups a (dead) agent recorded, killing what runs in them; for `down()`."""
    for base in recorded(record):
        remove_cluster_group(base)
    record.unlink(missing_ok=True)


def remove_cluster_group(base: Path) -> None:
    """Remove one cluster's `.../flywheel/<slot>` group, then the shared `flywheel` parent if
    no other cluster uses it."""
    if base.parent.name != "flywheel":
        raise ValueError(f"not a cluster's group: {base}")
    remove_tree(base)
    with contextlib.suppress(OSError):  # busy or not empty: another cluster's groups live there
        base.parent.rmdir()


def remove_tree(group: Path, *, timeout: float = 5.0) -> bool:
    """Kill every process in `group` and the groups below it, and remove them, deepest first;
    False when one could not be removed in `timeout` seconds."""
    if "flywheel" not in group.parts:
        raise ValueError(f"refusing to remove a group Flywheel did not create: {group}")
    if not group.is_dir():
        return True
    removed = True
    for path, _, _ in os.walk(group, topdown=False):
        removed = _remove_group(Path(path), timeout) and removed
    return removed


def _remove_group(group: Path, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        for pid in _procs(group):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            group.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError as error:  # EBUSY until the killed processes have exited
            if time.monotonic() > deadline:
                log.warning("cannot remove cgroup %s: %s", group, error)
                return False
            time.sleep(0.02)


def _procs(group: Path) -> list[int]:
    try:
        return [int(pid) for pid in (group / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _number(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _stat(path: Path, key: str) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    return None


def own_groups(proc: Path = Path("/proc/self")) -> dict[str, Path]:
    """For each of CONTROLLERS mounted as cgroup v1: the directory of this process's group."""
    mounts: dict[str, tuple[str, Path]] = {}
    for line in (proc / "mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, source = left.split(), right.split()
        if len(fields) < 5 or len(source) < 3 or source[0] != "cgroup":
            continue
        options = source[2].split(",")
        for controller in CONTROLLERS:
            if controller in options:
                mounts[controller] = (fields[3], Path(fields[4]))
    groups: dict[str, Path] = {}
    for line in (proc / "cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        for controller in names.split(","):
            if controller not in mounts:
                continue
            root, point = mounts[controller]
            inside = path[len(root) :] if root != "/" and path.startswith(root) else path
            group = point / inside.lstrip("/")
            if os.access(group, os.W_OK):
                groups[controller] = group
    return groups
