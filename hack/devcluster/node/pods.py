"""One worker per pod bound to the node: sandbox, volumes, containers, probes, status, deletion.

The worker runs the init containers in order, then every container, each as a process inside the
pod's sandbox; it restarts them by `restartPolicy` with the kubelet's back-off, drives
readiness, liveness and startup probes, records exit codes and termination messages, and writes
the pod's status after every change (`status_writer`: retried until written, the last state
included). On deletion it sends SIGTERM, waits the grace period, SIGKILLs, removes the sandbox
and then the pod object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from devcluster.node import events, launch, logs
from devcluster.node.api import Api
from devcluster.node.cgroups import ContainerCgroup, NodeCgroups
from devcluster.node.env import ContainerConfigError, container_env, expand
from devcluster.node.launch import Launch
from devcluster.node.network import Addresses, PodNetwork
from devcluster.node.probes import probe
from devcluster.node.sandbox import ContainerRoot, Mount, Sandbox, SandboxError
from devcluster.node.status import ContainerRun, now_rfc3339, pod_status
from devcluster.node.status_writer import StatusWriter, persist
from devcluster.node.volumes import HostVolume, prepare_volumes

log = logging.getLogger(__name__)
Obj = dict[str, Any]
MAX_MESSAGE = 4096


@dataclass
class NodeContext:
    """What every pod worker shares."""

    api: Api
    host_ip: str
    pods_dir: Path
    base_env: dict[str, str]
    host_resources: tuple[int, int]
    image_commands: dict[str, list[str]]
    backoff_base: float = 10.0
    network: PodNetwork = field(default_factory=PodNetwork)
    addresses: Addresses = field(default_factory=lambda: Addresses(PodNetwork()))
    cgroups: NodeCgroups = field(default_factory=NodeCgroups.disabled)
    node_name: str = ""


@dataclass
class Running:
    """A container process and its bookkeeping."""

    run: ContainerRun
    spec: Obj
    process: asyncio.subprocess.Process | None = None
    root: ContainerRoot | None = None
    term_log: Path | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    kill_reason: str | None = None
    cgroup: ContainerCgroup | None = None
    launch: Launch | None = None
    pin: int | None = None
    """Keeps the image it runs from in the store (a descriptor; closed at teardown)."""
    env: dict[str, str] = field(default_factory=dict)


class PodWorker:
    """Runs one pod until it completes or is deleted."""

    def __init__(self, ctx: NodeContext, pod: Obj) -> None:
        self.ctx = ctx
        self.pod = pod
        meta = pod["metadata"]
        self.uid: str = meta["uid"]
        self.path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}"
        self.directory = ctx.pods_dir / self.uid
        netns = ctx.network.netns_prefix + self.uid.replace("-", "")[:11]
        hostname = pod["spec"].get("hostname") or meta["name"]
        self.sandbox = Sandbox(self.directory, netns, ctx.network, hostname)
        self.cgroups = ctx.cgroups.pod(self.uid)
        spec = pod["spec"]
        self.inits = [
            Running(ContainerRun(c["name"], c.get("image", ""), init=True), c)
            for c in spec.get("initContainers", [])
        ]
        self.containers = [
            Running(ContainerRun(c["name"], c.get("image", "")), c) for c in spec["containers"]
        ]
        self.address: IPv4Address | None = None
        self.pod_ip: str | None = None
        self.start_time = pod.get("status", {}).get("startTime") or now_rfc3339()
        self.volumes: dict[str, HostVolume] = {}
        self.message: str | None = None
        self.sandbox_ready = False
        self.terminating = asyncio.Event()
        self.status = StatusWriter(self._write_status, self.path)
        self.dirty = self.status.dirty  # set after every change: the writer sends the status
        self.task: asyncio.Task[None] | None = None

    def container_runs(self) -> dict[str, ContainerRun]:
        """Every container (init containers too) by name, with its current run."""
        return {c.run.name: c.run for c in (*self.inits, *self.containers)}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin running the pod in the background."""
        self.task = asyncio.create_task(self._main(), name=f"pod-{self.uid}")

    def update(self, pod: Obj) -> None:
        """A newer version of the pod object arrived."""
        self.pod = {**pod, "status": pod.get("status", {})}
        if pod["metadata"].get("deletionTimestamp") and not self.terminating.is_set():
            self.terminating.set()

    async def _main(self) -> None:
        self.status.start()
        try:
            await self._run_pod()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # a broken sandbox must not take the agent down
            log.exception("pod %s failed in the node agent", self.path)
            self.message = f"node agent error: {error}"
        finally:
            grace = self._grace_period()
            await self._stop_containers(grace)
            await self._teardown()
            # The last state change (the exit, the teardown) reaches the API server: the
            # writer retries until it is written or the pod is gone.
            await self.status.flush()
            await self.status.stop()
            if self.terminating.is_set() and not self.status.gone:
                body = {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}}
                await persist(
                    lambda: self.ctx.api.delete(self.path, body),
                    f"delete {self.path}",
                    final=(404, 409),  # gone, or another pod of that name now
                )

    async def _run_pod(self) -> None:
        self.address = self.ctx.addresses.take()
        self.pod_ip = str(self.address)
        await self.sandbox.start(self.pod_ip)
        self.sandbox_ready = True
        self.dirty.set()
        while not await self._prepare_volumes():
            if await self._wait_terminating(5):
                return
        for init in self.inits:
            while True:
                await self._run_once(init)
                if init.run.exit_code == 0 or self.terminating.is_set():
                    break
                if self.pod["spec"].get("restartPolicy", "Always") == "Never":
                    return
                if await self._backoff(init):
                    return
            if self.terminating.is_set():
                return
        supervisors: asyncio.Future[Any] = asyncio.gather(
            *(self._supervise(c) for c in self.containers)
        )
        terminating: asyncio.Future[Any] = asyncio.ensure_future(self.terminating.wait())
        await asyncio.wait([terminating, supervisors], return_when=asyncio.FIRST_COMPLETED)
        terminating.cancel()
        supervisors.cancel()

    async def _prepare_volumes(self) -> bool:
        try:
            self.volumes = await prepare_volumes(
                self.ctx.api, self.pod, self.directory / "volumes", self.ctx.host_resources
            )
        except ContainerConfigError as error:
            for c in [*self.inits, *self.containers]:
                c.run.state = {
                    "waiting": {"reason": "CreateContainerConfigError", "message": str(error)}
                }
            self.dirty.set()
            return False
        except Exception as error:  # a token request failing under load: try again
            log.warning("volumes of %s: %s: %s; retrying", self.path, type(error).__name__, error)
            return False
        return True

    async def _wait_terminating(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.terminating.wait(), seconds)
        return self.terminating.is_set()

    # --- containers --------------------------------------------------------------------------

    async def _supervise(self, c: Running) -> None:
        policy = self.pod["spec"].get("restartPolicy", "Always")
        while not self.terminating.is_set():
            await self._run_once(c)
            if self.terminating.is_set():
                return
            code = c.run.exit_code
            if policy == "Never" or (policy == "OnFailure" and code == 0):
                return
            if await self._backoff(c):
                return

    async def _backoff(self, c: Running) -> bool:
        """Wait before a restart (CrashLoopBackOff); True when the pod is being deleted."""
        delay = min(self.ctx.backoff_base * 2 ** max(c.run.restart_count - 1, 0), 300.0)
        c.run.last_state = dict(c.run.state)
        c.run.state = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off {delay:.0f}s restarting failed container={c.run.name} "
                f"pod={self.pod['metadata']['name']}",
            }
        }
        c.run.restart_count += 1
        self.dirty.set()
        return await self._wait_terminating(delay)

    async def _run_once(self, c: Running) -> None:
        """Start the container, watch it until it exits, record how it ended."""
        c.kill_reason = None
        try:
            c.launch, c.env, argv = await self._command(c)
            c.pin = launch.pinned(c.launch, c.pin)
            if c.run.restart_count == 0:
                await self._said_where_from(c.run.name, c.launch, c.spec.get("image", ""))
            c.root, c.term_log = await self._root(c, c.launch.lower)
            log_path = self.directory / "logs" / f"{c.run.name}-{c.run.restart_count}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            command = self.sandbox.command(
                c.root, argv, cwd=c.launch.working_dir, user=c.launch.user
            )
            run_name = f"{c.run.name}-{c.run.restart_count}"
            c.cgroup = await asyncio.to_thread(self.cgroups.container, run_name, c.spec)
            command = c.cgroup.wrap(command)  # joins its cgroups, then runs the container
            c.process, pumps = await logs.spawn(command, c.env, log_path)
        except (ContainerConfigError, SandboxError, OSError) as error:
            c.run.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(error)[:MAX_MESSAGE],
                    "startedAt": now_rfc3339(),
                    "finishedAt": now_rfc3339(),
                }
            }
            self.dirty.set()
            return
        started = now_rfc3339()
        c.run.state = {"running": {"startedAt": started}}
        c.run.started = "startupProbe" not in c.spec
        c.run.ready = "readinessProbe" not in c.spec and not c.run.init
        self.dirty.set()
        c.tasks = [asyncio.create_task(self._probes(c))] if not c.run.init else []
        code = await c.process.wait()
        await logs.drain(pumps)
        for task in c.tasks:
            task.cancel()
        cgroup, c.cgroup = c.cgroup, None
        if cgroup is not None and await cgroup.ended(code, f"{self.path}/{c.run.name}"):
            c.kill_reason = "OOMKilled"
        c.run.ready = False
        c.run.state = {"terminated": self._terminated(c, code, started, log_path)}
        self.dirty.set()

    async def _command(self, c: Running) -> tuple[Launch, dict[str, str], list[str]]:
        how = launch.plan(
            self.pod, c.spec, host_env=self.ctx.base_env, image_commands=self.ctx.image_commands
        )
        env = await container_env(
            self.pod, c.spec, self._fetch, base=how.base_env, host=self.ctx.host_resources
        )
        return how, env, [expand(a, env) for a in how.argv]

    async def _said_where_from(self, container: str, how: Launch, image: str) -> None:
        if how.image is not None:
            reason, message = "Pulled", f'Container image "{image}" already present on machine'
        else:
            reason = "HostRuntime"
            message = (
                f'Image "{image}" is not in the local image store (make images-local): the '
                "container runs from the host's environment (docs/local-cluster.md)"
            )
        await events.record(self.ctx.api, self.pod, container, self.ctx.node_name, reason, message)

    async def _fetch(self, kind: str, name: str) -> Obj | None:
        resource = "configmaps" if kind == "ConfigMap" else "secrets"
        namespace = self.pod["metadata"]["namespace"]
        return await self.ctx.api.get_or_none(f"/api/v1/namespaces/{namespace}/{resource}/{name}")

    async def _root(self, c: Running, lower: Path | None) -> tuple[ContainerRoot, Path]:
        mounts = []
        for item in c.spec.get("volumeMounts", []):
            volume = self.volumes.get(item["name"])
            if volume is None:
                raise ContainerConfigError(f"volumeMount {item['name']} names no volume")
            source = volume.path / item.get("subPath", "") if item.get("subPath") else volume.path
            if item.get("subPath"):
                source.mkdir(parents=True, exist_ok=True)
            mounts.append(
                Mount(source, item["mountPath"], volume.read_only or bool(item.get("readOnly")))
            )
        term_log = self.directory / "termination" / f"{c.run.name}-{c.run.restart_count}"
        term_log.parent.mkdir(parents=True, exist_ok=True)
        term_log.write_bytes(b"")
        term_log.chmod(0o666)
        mounts.append(Mount(term_log, c.spec.get("terminationMessagePath", "/dev/termination-log")))
        read_only = bool((c.spec.get("securityContext") or {}).get("readOnlyRootFilesystem"))
        root = await self.sandbox.prepare_root(
            f"{c.run.name}-{c.run.restart_count}", mounts, read_only=read_only, lower=lower
        )
        return root, term_log

    def _terminated(self, c: Running, code: int, started: str, log_path: Path) -> Obj:
        message = (
            c.term_log.read_bytes()[:MAX_MESSAGE].decode(errors="replace") if c.term_log else ""
        )
        policy = c.spec.get("terminationMessagePolicy", "File")
        if not message and code != 0 and policy == "FallbackToLogsOnError":
            tail, _ = logs.select(log_path.read_bytes(), logs.LogOptions(tail_lines=80))
            message = tail.decode(errors="replace").rstrip("\n")[-2048:]
        reason = c.kill_reason or ("Completed" if code == 0 else "Error")
        if code < 0:  # killed by a signal: report as a shell would (128 + signal)
            code = 128 - code
        terminated: Obj = {
            "exitCode": code,
            "reason": reason,
            "startedAt": started,
            "finishedAt": now_rfc3339(),
            "containerID": f"flywheel://{c.run.name}-{c.run.restart_count}",
        }
        if message:
            terminated["message"] = message
        return terminated

    async def _probes(self, c: Running) -> None:
        spec = c.spec
        if "startupProbe" in spec:
            if not await self._probe_until(c, spec["startupProbe"], want=True):
                await self._kill(c, "startup probe failed")
                return
            c.run.started = True
            self.dirty.set()
        loops = []
        if "readinessProbe" in spec:
            loops.append(self._readiness(c, spec["readinessProbe"]))
        if "livenessProbe" in spec:
            loops.append(self._liveness(c, spec["livenessProbe"]))
        await asyncio.gather(*loops)

    async def _probe_until(
        self, c: Running, spec: Obj, *, want: bool, threshold_on_success: bool = False
    ) -> bool:
        """Probe until the result is `want` (True), or `failureThreshold` misses (False).

        With `threshold_on_success` (liveness), it returns True only after `failureThreshold`
        consecutive failures: a single failed probe does not kill a container.
        """
        await asyncio.sleep(float(spec.get("initialDelaySeconds", 0)))
        misses = 0
        threshold = int(spec.get("failureThreshold", 3))
        while True:
            ok, _ = await probe(spec, c.spec, self.pod_ip or "", self._exec_in(c))
            if threshold_on_success:
                misses = 0 if ok else misses + 1
                if misses >= threshold:
                    return True
            elif ok == want:
                return True
            else:
                misses += 1
                if misses >= threshold:
                    return False
            await asyncio.sleep(float(spec.get("periodSeconds", 10)))

    async def _readiness(self, c: Running, spec: Obj) -> None:
        await asyncio.sleep(float(spec.get("initialDelaySeconds", 0)))
        successes = failures = 0
        while True:
            ok, _ = await probe(spec, c.spec, self.pod_ip or "", self._exec_in(c))
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and successes >= int(spec.get("successThreshold", 1)) and not c.run.ready:
                c.run.ready = True
                self.dirty.set()
            elif not ok and failures >= int(spec.get("failureThreshold", 3)) and c.run.ready:
                c.run.ready = False
                self.dirty.set()
            await asyncio.sleep(float(spec.get("periodSeconds", 10)))

    async def _liveness(self, c: Running, spec: Obj) -> None:
        await self._probe_until(c, spec, want=False, threshold_on_success=True)
        await self._kill(c, "liveness probe failed")

    def exec_command(
        self, name: str, argv: list[str], cwd: str | None = None
    ) -> tuple[list[str], int] | None:
        """The host command line running `argv` inside the running container `name` (its
        namespaces, root, user, cgroups: probes and exec count there; in its workingDir unless
        `cwd`), and the pid of the container's process; None when it is not running."""
        c = next((c for c in (*self.inits, *self.containers) if c.run.name == name), None)
        if c is None or c.root is None or c.process is None or c.process.returncode is not None:
            return None
        how = c.launch
        cwd = (how.working_dir if how else "") if cwd is None else cwd
        command = self.sandbox.command(c.root, argv, cwd=cwd, user=how.user if how else None)
        return (command if c.cgroup is None else c.cgroup.wrap(command)), c.process.pid

    def _exec_in(self, c: Running) -> Any:
        async def run(argv: list[str], timeout: float) -> int:
            found = self.exec_command(c.run.name, argv, "/")
            if found is None:  # it has just exited
                return -1
            process = await asyncio.create_subprocess_exec(
                *found[0],
                env=c.env or None,  # as the container: its PATH finds the probe's command
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            try:
                return await asyncio.wait_for(process.wait(), timeout)
            except TimeoutError:
                process.kill()
                await process.wait()
                return -1

        return run

    async def _kill(self, c: Running, why: str) -> None:
        log.info("%s/%s: %s, killing", self.path, c.run.name, why)
        c.kill_reason = "Error"
        await _signal_and_wait(c, float(self.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    async def _stop_containers(self, grace: float) -> None:
        await asyncio.gather(*(_signal_and_wait(c, grace) for c in [*self.inits, *self.containers]))
        for c in [*self.inits, *self.containers]:
            for task in c.tasks:
                task.cancel()

    def _grace_period(self) -> float:
        meta = self.pod["metadata"]
        if "deletionGracePeriodSeconds" in meta:
            return float(meta["deletionGracePeriodSeconds"])
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    async def _teardown(self) -> None:
        for c in (*self.inits, *self.containers):
            launch.pinned(None, c.pin)
        await asyncio.to_thread(self.cgroups.remove, self.path)  # kills what is left in them
        await self.sandbox.stop()
        if self.address is not None:
            self.ctx.addresses.release(self.address)
            self.address = None
        # Logs stay until the pod object is deleted (as with the kubelet); roots go now.
        doomed = self.directory if self.terminating.is_set() else self.directory / "containers"
        proc = await asyncio.create_subprocess_exec("rm", "-rf", str(doomed))
        await proc.wait()

    # --- status ------------------------------------------------------------------------------

    async def _write_status(self) -> None:
        status = pod_status(
            self.pod,
            inits=[c.run for c in self.inits],
            containers=[c.run for c in self.containers],
            pod_ip=self.pod_ip,
            host_ip=self.ctx.host_ip,
            start_time=self.start_time,
            sandbox_ready=self.sandbox_ready,
            message=self.message,
        )
        answer = await self.ctx.api.patch(self.path + "/status", {"status": status})
        self.pod = {**self.pod, "status": answer.get("status", status)}


async def _signal_and_wait(c: Running, grace: float) -> None:
    process = c.process
    if process is None or process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(process.wait()), grace)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
