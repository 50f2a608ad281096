"""The node agent: registers a Node, keeps its lease, runs the pods bound to it, provisions PVs.

A stand-in for the kubelet on the local cluster (test infrastructure, not product). Everything
above it - API server, scheduler, controllers, the operator - is real. Started by
`python -m devcluster.node` (the cluster's `up` does it); needs root for namespaces and mounts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from devcluster.node import cgroups, network
from devcluster.node.api import Api, ApiError
from devcluster.node.kubelet import KUBELET_PORT, KubeletServer, Tls
from devcluster.node.pods import NodeContext, PodWorker
from devcluster.node.status import now_rfc3339
from devcluster.node.storage import Provisioner

log = logging.getLogger(__name__)
Obj = dict[str, Any]
LEASE_SECONDS = 40
HEARTBEAT = 10.0


ZONE_LABEL = "topology.kubernetes.io/zone"
REGION_LABEL = "topology.kubernetes.io/region"
REGION = "local"


def render_node(
    name: str, plan: network.PodNetwork, *, cpus: int, memory_kib: int, version: str, zone: str
) -> Obj:
    """The Node object, Ready and schedulable, labelled with its hostname and its zone (each
    node of a local cluster is a zone of its own, in the region `local`), so topology spread
    constraints and anti-affinity on either key work as on a cloud cluster."""
    resources = {
        "cpu": str(cpus),
        "memory": f"{memory_kib}Ki",
        "pods": "110",
        "ephemeral-storage": "100Gi",
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "node.kubernetes.io/instance-type": "flywheel-local",
                ZONE_LABEL: zone,
                REGION_LABEL: REGION,
            },
        },
        "spec": {"podCIDR": str(plan.cidr), "podCIDRs": [str(plan.cidr)]},
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "addresses": [
                {"type": "InternalIP", "address": str(plan.gateway)},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "kubeletVersion": version,
                "kubeProxyVersion": version,
                "operatingSystem": "linux",
                "architecture": "amd64",
                "containerRuntimeVersion": "flywheel-local://0.1",
                "osImage": "flywheel local node",
                "kernelVersion": os.uname().release,
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def ready_conditions() -> list[Obj]:
    """Node conditions of a healthy node, with a fresh heartbeat."""
    now = now_rfc3339()

    def cond(type_: str, status: str, reason: str) -> Obj:
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": reason,
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }

    return [
        cond("Ready", "True", "KubeletReady"),
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID"),
    ]


class Agent:
    """Runs until stopped; cleans up everything it created."""

    def __init__(
        self,
        api: Api,
        *,
        directory: Path,
        node_name: str,
        api_port: int,
        version: str,
        image_commands: dict[str, list[str]],
        backoff_base: float,
        plan: network.PodNetwork,
        peers: tuple[network.PodNetwork, ...] = (),
        zone: str = "local-a",
        kubelet_tls: Tls | None = None,
    ) -> None:
        self.api = api
        self.plan = plan
        self.peers = peers
        self.zone = zone
        self.directory = directory
        self.node_name = node_name
        self.version = version
        self.forwarder = network.ApiForwarder(plan, api_port)
        self.kubelet = (
            None
            if kubelet_tls is None
            else KubeletServer(self.find_pod, kubelet_tls, str(plan.gateway), KUBELET_PORT)
        )
        self.provisioner = Provisioner(api, directory / "volumes", node_name)
        self.workers: dict[str, PodWorker] = {}
        self.stopping = asyncio.Event()
        venv_bin = str(Path(sys.executable).parent)
        self.ctx = NodeContext(
            api=api,
            host_ip=str(plan.gateway),
            pods_dir=directory / "pods",
            base_env={
                "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "HOME": "/tmp",
                "KUBERNETES_SERVICE_HOST": str(plan.gateway),
                "KUBERNETES_SERVICE_PORT": str(network.API_PORT_ON_GATEWAY),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(network.API_PORT_ON_GATEWAY),
                "KUBERNETES_PORT": f"tcp://{plan.gateway}:{network.API_PORT_ON_GATEWAY}",
            },
            host_resources=(os.cpu_count() or 1, _memory_kib() * 1024),
            image_commands=image_commands,
            backoff_base=backoff_base,
            addresses=network.Addresses(plan),
            network=plan,
            node_name=node_name,
            cgroups=cgroups.NodeCgroups(
                plan.index, directory / cgroups.RECORD, pod_pids=cgroups.pod_pids_limit()
            ),
        )

    async def run(self) -> None:
        """Set up, serve until SIGTERM/SIGINT, tear down."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.cleanup_leftovers()
        self.ctx.cgroups.setup()
        network.ensure_bridge(self.plan)
        network.ensure_routing(self.plan, self.peers)
        await self.forwarder.start()
        if self.kubelet is not None:
            await self.kubelet.start()
        await self.register()
        await self.provisioner.install_class()
        tasks = [
            asyncio.create_task(self._heartbeat()),
            asyncio.create_task(
                self._loop("pods", self._on_pod, fieldSelector=f"spec.nodeName={self.node_name}")
            ),
            asyncio.create_task(self._loop("persistentvolumeclaims", self.provisioner.on_claim)),
            asyncio.create_task(self._loop("persistentvolumes", self.provisioner.on_volume)),
        ]
        log.info("node %s ready", self.node_name)
        await self.stopping.wait()
        for task in tasks:
            task.cancel()
        await self.shutdown()

    async def register(self) -> None:
        """Create (or refresh) the Node and its Lease."""
        node = render_node(
            self.node_name,
            self.plan,
            cpus=os.cpu_count() or 1,
            memory_kib=_memory_kib(),
            version=self.version,
            zone=self.zone,
        )
        if await self.api.get_or_none(f"/api/v1/nodes/{self.node_name}") is None:
            await self.api.create("/api/v1/nodes", {k: v for k, v in node.items() if k != "status"})
        status = {
            **node["status"],
            "conditions": ready_conditions(),
            "daemonEndpoints": {
                "kubeletEndpoint": {"Port": KUBELET_PORT if self.kubelet is not None else 0}
            },
        }
        await self.api.patch(f"/api/v1/nodes/{self.node_name}/status", {"status": status})
        await self._renew_lease()

    async def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{self.node_name}"
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": now,
        }
        if await self.api.get_or_none(path) is None:
            await self.api.create(
                path.rsplit("/", 1)[0],
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node_name, "namespace": "kube-node-lease"},
                    "spec": spec,
                },
            )
        else:
            await self.api.patch(path, {"spec": spec})

    async def _heartbeat(self) -> None:
        beats = 0
        while True:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._renew_lease()
                beats += 1
                if beats % 4 == 0:  # node status every 40 s, as the kubelet's default
                    await self.api.patch(
                        f"/api/v1/nodes/{self.node_name}/status",
                        {"status": {"conditions": ready_conditions()}},
                    )
            except asyncio.CancelledError:
                raise
            except Exception as error:  # whatever fails, the next beat tries again
                log.warning("heartbeat: %s: %s", type(error).__name__, error)

    async def _loop(
        self, resource: str, handle: Callable[[Obj], Awaitable[None]], **params: str
    ) -> None:
        """List, then watch, forever; every object goes to `handle`."""
        path = f"/api/v1/{resource}"
        while True:
            try:
                listing = await self.api.get(path, **params)
                for item in listing.get("items", []):
                    await self._safely(handle, item)
                version = listing["metadata"]["resourceVersion"]
                async for event in self.api.watch(path, resourceVersion=version, **params):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        await self._safely(handle, event["object"])
                    elif event["type"] == "DELETED" and resource == "pods":
                        self._forget(event["object"])
                    elif event["type"] == "ERROR":
                        break
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("watch %s: %s", resource, error)
                await asyncio.sleep(1)

    async def _safely(self, handle: Callable[[Obj], Awaitable[None]], obj: Obj) -> None:
        try:
            await handle(obj)
        except (ApiError, OSError) as error:
            log.warning("%s %s: %s", obj.get("kind", "object"), obj["metadata"].get("name"), error)

    async def _on_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if worker is not None and worker.task is not None and not worker.task.done():
            worker.update(pod)
            return
        if meta.get("deletionTimestamp"):
            # Nothing of it runs (it finished, or predates an agent restart): remove what is
            # left of it, then the object, as the kubelet does.
            if self.workers.pop(uid, None) is not None:
                shutil.rmtree(self.ctx.pods_dir / uid, ignore_errors=True)
            await self.api.delete(
                f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}},
            )
            return
        if worker is not None or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            return  # finished: its logs stay until the pod is deleted
        worker = PodWorker(self.ctx, pod)
        self.workers[uid] = worker
        worker.start()

    def find_pod(self, namespace: str, name: str) -> PodWorker | None:
        """The newest pod of that name the node runs or ran (its logs stay until deleted)."""
        found = [
            worker
            for worker in self.workers.values()
            if worker.pod["metadata"]["namespace"] == namespace
            and worker.pod["metadata"]["name"] == name
        ]
        return found[-1] if found else None

    def _forget(self, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        worker = self.workers.pop(uid, None)
        if worker is not None and worker.task is not None and not worker.task.done():
            worker.terminating.set()  # force-deleted while running: stop it and clean up
        else:
            shutil.rmtree(self.ctx.pods_dir / uid, ignore_errors=True)

    async def shutdown(self) -> None:
        """Stop every pod (as on node shutdown) and remove the bridge and forwarder."""
        for worker in self.workers.values():
            worker.terminating.set()
        pending = [w.task for w in self.workers.values() if w.task is not None]
        if pending:
            await asyncio.wait(pending, timeout=30)
        await self.forwarder.stop()
        if self.kubelet is not None:
            await self.kubelet.stop()
        self.cleanup_leftovers()
        network.remove_bridge(self.plan)

    def cleanup_leftovers(self) -> None:
        """Remove namespaces, cgroups and pod directories left by a previous agent (crash,
        kill -9)."""
        network.remove_pod_namespaces(self.plan)
        self.ctx.cgroups.remove()
        shutil.rmtree(self.directory / "pods", ignore_errors=True)


def _memory_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 1024 * 1024


def default_node_name() -> str:
    """The node's name: `flywheel-<hostname>`, lower-case."""
    return f"flywheel-{socket.gethostname().lower()}"[:63]
