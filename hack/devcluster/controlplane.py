"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

`up()` starts a cluster in slots (one pod network index per node, and ports) claimed host-wide
(`devcluster.claims`), waits until the API server is ready, the controller manager has created
the `default` ServiceAccount, the scheduler is healthy and every node is Ready, and records pids
and ports in `state.json`. `nodes` > 1 starts that many node agents (`devcluster.components`),
routed to each other. On a cluster that runs, it waits for the live components and restarts only
dead ones; it keeps the nodes it has and refuses to add any. `down()` stops the processes
`state.json` records and removes the pod network and claim that are this cluster's. All state
lives in one directory: `pki/`, `etcd/`, `logs/`, the kubeconfigs and `state.json`. Everything
listens on 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from devcluster import claims, pki, processes
from devcluster.binaries import Binaries
from devcluster.components import (
    COMPONENTS,
    CONTROL_PLANE,
    NODE,
    PORT_NAMES,
    State,
    command_line,
    is_node,
    node_component,
    node_name,
    node_number,
)
from devcluster.kubeconfig import write_kubeconfig
from devcluster.node import cgroups, network

__all__ = ["COMPONENTS", "NODE", "Cluster", "ClusterError", "State"]

READY_TIMEOUT = 90.0


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the component and its log tail."""


@dataclass(frozen=True)
class Cluster:
    """A local cluster rooted at `directory`."""

    directory: Path
    binaries: Binaries
    with_node: bool = True
    """Run the local node agent (needs root) so that pods really run."""
    apiserver_args: tuple[str, ...] = ()
    """Extra kube-apiserver flags (e.g. an audit log for a benchmark)."""
    nodes: int = 1
    """Node agents to start (a running cluster keeps the nodes it has)."""

    @property
    def components(self) -> tuple[str, ...]:
        """The components this cluster runs, in start order."""
        return self._components(self.load_state())

    def _components(self, state: State) -> tuple[str, ...]:
        if not self.with_node:
            return CONTROL_PLANE
        count = max(self.nodes, len(state.node_indices()) if state.ports else 0)
        return (*CONTROL_PLANE, *(node_component(n) for n in range(1, count + 1)))

    def binary(self, name: str) -> str:
        """The executable of a component."""
        return sys.executable if is_node(name) else self.binaries.path(name)

    def node_dir(self, number: int) -> Path:
        """The state directory (pods, volumes) of node `number`."""
        return self.directory / ("node" if number == 1 else f"node-{number}")

    @property
    def kubeconfig(self) -> Path:
        """The admin kubeconfig (group system:masters)."""
        return self.directory / "kubeconfig"

    @property
    def logs(self) -> Path:
        """Where each component's log goes."""
        return self.directory / "logs"

    @property
    def pki(self) -> Path:
        """Certificates and keys."""
        return self.directory / "pki"

    def log_tail(self, component: str, lines: int = 40) -> str:
        """The end of a component's log, for error messages."""
        path = self.logs / f"{component}.log"
        if not path.exists():
            return f"(no log at {path})"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- state -----------------------------------------------------------------------------

    def load_state(self) -> State:
        """The recorded state, empty when none."""
        path = self.directory / "state.json"
        if not path.exists():
            return State()
        return State(**json.loads(path.read_text()))

    def _save_state(self, state: State) -> None:
        # Atomically: other clusters' `up` read it to tell a live claim from a stale one.
        scratch = self.directory / "state.json.tmp"
        scratch.write_text(json.dumps(asdict(state), indent=2))
        scratch.replace(self.directory / "state.json")

    def running(self, state: State | None = None) -> dict[str, bool]:
        """Which recorded components are alive."""
        state = state or self.load_state()
        return {
            name: name in state.pids and processes.alive(state.pids[name], self.binary(name))
            for name in self._components(state)
        }

    # --- lifecycle -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up` or `down` at a time on this directory (two `make cluster-up`s at once)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def up(self) -> State:
        """Start the cluster, or reuse it: when its state file records a live process, wait
        for the live components and restart only the dead ones (never stopping one)."""
        with self._exclusive():
            return self._up()

    def _up(self) -> State:
        state = self.load_state()
        if any(
            processes.alive(pid, self.binary(name))
            for name, pid in state.pids.items()
            if name in CONTROL_PLANE or is_node(name)
        ):
            return self._reuse(state)
        self._require_root()
        self._down(keep_data=True)  # nothing of it runs: clear what a crash left
        # A cluster keeps its nodes across restarts (their Node objects are in etcd).
        count = max(self.nodes, len(state.node_indices()) if state.ports else 0)
        registry = claims.Registry()
        with registry.locked():  # concurrent `up`s get distinct slots and ports
            try:
                slots = registry.claim_slots(
                    self.directory,
                    PORT_NAMES,
                    count if self.with_node else 1,
                    wanted_indices=state.node_indices() if state.ports else None,
                    wanted_ports=state.ports,
                    slot_free=lambda i: not network.bridge_exists(network.PodNetwork(i)),
                )
            except claims.ClaimError as error:
                raise ClusterError(str(error)) from error
        state = State(
            ports=slots[0].ports,
            bin_dir=str(self.binaries.bin_dir),
            network_index=slots[0].index,
            network_indices=[slot.index for slot in slots],
        )
        self._ensure_pki_and_kubeconfigs(state)
        for name in self._components(state):
            self._spawn(name, state)
            if name == NODE:
                self._wait_default_service_account(state)
            self._wait_started(name, state)
        if not self.with_node:
            self._wait_default_service_account(state)
        return state

    def _reuse(self, state: State) -> State:
        """Wait (READY_TIMEOUT per component) until each live component is healthy; start the
        dead ones again on their recorded ports. A slow probe never stops anything."""
        recorded = len(state.node_indices())
        if self.with_node and self.nodes > recorded:
            raise ClusterError(
                f"the cluster in {self.directory} runs {recorded} node(s); {self.nodes} were "
                "asked for. Nodes are not added to a running cluster: stop it first "
                "(make cluster-down), then start it with the new number"
            )
        registry = claims.Registry()
        with registry.locked():
            for n, index in enumerate(state.node_indices()):
                registry.adopt(self.directory, index, state.ports if n == 0 else {})
        for name in self._components(state):
            if not processes.alive(state.pids.get(name, 0), self.binary(name)):
                if is_node(name):
                    self._require_root()
                self._spawn(name, state)
            self._wait_started(name, state)
        self._wait_default_service_account(state)
        return state

    def _require_root(self) -> None:
        if self.with_node and os.geteuid() != 0:
            raise ClusterError(
                "the local node needs root (network namespaces, mounts); "
                "run as root, or start the control plane only (--no-node)"
            )

    def down(self, *, keep_data: bool = False) -> None:
        """Stop the processes `state.json` records (reverse order; the node agent stops its
        pods), then remove the pod network and the claim it records, if this cluster holds
        them; drop etcd data unless `keep_data`. No other process is touched."""
        if not self.directory.exists():  # nothing runs from it; a claim may remain
            registry = claims.Registry()
            with registry.locked():
                registry.release(self.directory)
            return
        with self._exclusive():
            self._down(keep_data=keep_data)

    def _down(self, *, keep_data: bool) -> None:
        state = self.load_state()
        nodes = {
            number: index
            for number, index in enumerate(state.node_indices(), start=1)
            if node_component(number) in state.pids
        }
        # The node agents stop their pods first; give them their grace periods.
        for number in sorted(nodes, reverse=True):
            name = node_component(number)
            processes.stop(state.pids[name], self.binary(name), timeout=60.0)
        for name in reversed(CONTROL_PLANE):
            if name in state.pids:
                processes.stop(state.pids[name], self.binary(name), timeout=15.0)
        cleared = []
        registry = claims.Registry()
        with registry.locked():  # no `up` claims a slot while its network is removed
            for number, index in nodes.items():
                holder = registry.read(index)
                if holder is not None and holder.directory != str(self.directory):
                    continue  # taken over by another cluster: its network is not ours
                # A node agent that died (kill -9) leaves its pods, their namespaces and the
                # bridge behind: the processes inside this network's pod namespaces go.
                plan = network.PodNetwork(index)
                network.remove_pod_namespaces(plan)
                network.remove_bridge(plan)
                cgroups.remove_recorded(self.node_dir(number) / cgroups.RECORD)
                cleared.append(number)
            registry.release(self.directory)
        for number in cleared:
            subprocess.run(["rm", "-rf", str(self.node_dir(number) / "pods")], check=True)
        processes.reap_children(list(state.pids.values()))
        (self.directory / "state.json").unlink(missing_ok=True)
        if not keep_data:  # volumes go with the etcd data that referenced them
            data = [
                self.directory / "etcd",
                *self.directory.glob("node"),
                *self.directory.glob("node-*"),
            ]
            for path in data:
                subprocess.run(["rm", "-rf", str(path)], check=True)

    def stop_component(self, name: str, *, kill: bool = False) -> None:
        """Stop one running component (an outage, for tests); the rest keep running. With
        `kill`, SIGKILL at once: no graceful shutdown, connections just drop."""
        state = self.load_state()
        processes.stop(state.pids[name], self.binary(name), timeout=0.0 if kill else 15.0)
        processes.reap_children([state.pids[name]])

    def start_component(self, name: str) -> None:
        """Start one stopped component again, on its recorded ports, and wait until healthy."""
        state = self.load_state()
        self._spawn(name, state)
        self._wait_started(name, state)

    def _spawn(self, name: str, state: State) -> None:
        """Start one component with the recorded ports and record its pid."""
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        state.pids[name] = processes.spawn(
            self._argv(name, state), self.logs / f"{name}.log", env=env
        )
        self._save_state(state)

    # --- wiring ----------------------------------------------------------------------------

    def _ensure_pki_and_kubeconfigs(self, state: State) -> None:
        ca = pki.ensure_ca(self.pki)
        pki.ensure_leaf(
            self.pki,
            "apiserver",
            ca,
            common_name="kube-apiserver",
            server_ips=(
                "127.0.0.1",
                "10.96.0.1",
                *(str(network.PodNetwork(i).gateway) for i in state.node_indices()),
            ),
            server_dns=(
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        )
        pki.ensure_service_account_key(self.pki)
        # The kubelet API: the API server's client certificate, each node's serving one.
        pki.ensure_leaf(
            self.pki,
            "apiserver-kubelet-client",
            ca,
            common_name="kube-apiserver-kubelet-client",
            organization="system:masters",
        )
        for number, index in enumerate(state.node_indices(), start=1):
            pki.ensure_leaf(
                self.pki,
                f"kubelet-{number}",
                ca,
                common_name=f"system:node:{node_name(number)}",
                organization="system:nodes",
                server_ips=(str(network.PodNetwork(index).gateway),),
                server_dns=(node_name(number),),
            )
        server = f"https://127.0.0.1:{state.ports['apiserver']}"
        users = {
            "kubeconfig": ("admin", "flywheel-admin", "system:masters"),
            "controller-manager.kubeconfig": (
                "controller-manager",
                "system:kube-controller-manager",
                None,
            ),
            "scheduler.kubeconfig": ("scheduler", "system:kube-scheduler", None),
        }
        for filename, (name, user, group) in users.items():
            client = pki.ensure_leaf(self.pki, name, ca, common_name=user, organization=group)
            write_kubeconfig(
                self.directory / filename, server=server, ca=ca.cert, client=client, user=user
            )

    def _argv(self, name: str, state: State) -> list[str]:
        return command_line(
            name,
            state,
            directory=self.directory,
            binaries=self.binaries,
            node_dir=self.node_dir,
            apiserver_args=self.apiserver_args,
        )

    # --- health ----------------------------------------------------------------------------

    def _client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki / "ca.crt"))
        context.load_cert_chain(self.pki / "admin.crt", self.pki / "admin.key")
        return context

    def _api_ready(self, state: State) -> bool:
        port = state.ports.get("apiserver")
        if not port or not (self.pki / "admin.crt").exists():
            return False
        return _get_ok(f"https://127.0.0.1:{port}/readyz", self._client_context())

    def _wait_started(self, name: str, state: State) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        insecure = ssl.create_default_context()
        insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
        while time.monotonic() < deadline:
            if not processes.alive(state.pids[name], self.binary(name)):
                raise ClusterError(f"{name} exited during start-up:\n{self.log_tail(name)}")
            if name == "etcd" and _get_ok(f"http://127.0.0.1:{state.ports['etcd-client']}/health"):
                return
            if name == "kube-apiserver" and self._api_ready(state):
                return
            if is_node(name) and self._node_ready(state, name):
                return
            port = state.ports.get(
                {
                    "kube-controller-manager": "controller-manager",
                    "kube-scheduler": "scheduler",
                }.get(name, ""),
                0,
            )
            if port and _get_ok(f"https://127.0.0.1:{port}/healthz", insecure):
                return
            time.sleep(0.1)
        raise ClusterError(f"{name} not healthy after {READY_TIMEOUT:.0f}s:\n{self.log_tail(name)}")

    def _node_ready(self, state: State, component: str) -> bool:
        number = node_number(component)
        url = f"https://127.0.0.1:{state.ports['apiserver']}/api/v1/nodes/{node_name(number)}"
        try:
            with urllib.request.urlopen(url, timeout=2, context=self._client_context()) as answer:
                node = json.loads(answer.read())
        except OSError:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in node.get("status", {}).get("conditions", [])
        )

    def _wait_default_service_account(self, state: State) -> None:
        """The service-account controllers work: pods can be admitted in `default`."""
        url = f"https://127.0.0.1:{state.ports['apiserver']}/api/v1/namespaces/default/serviceaccounts/default"
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if _get_ok(url, self._client_context()):
                return
            time.sleep(0.2)
        raise ClusterError(
            "kube-controller-manager did not create the default ServiceAccount:\n"
            + self.log_tail("kube-controller-manager")
        )


def _get_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return bool(response.status == 200)
    except OSError:
        return False
