"""The local control plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler.

`up()` starts a cluster in a slot (pod network index and ports) claimed host-wide
(`devcluster.claims`), waits until the API server is ready, the controller manager has created
the `default` ServiceAccount and the scheduler is healthy, and records pids and ports in
`state.json`. On a cluster that runs, it waits for the live components and restarts only dead
ones. `down()` stops the processes `state.json` records and removes the pod network and claim
that are this cluster's. All state lives in one directory: `pki/`, `etcd/`, `logs/`, the
kubeconfigs and `state.json`. Everything listens on 127.0.0.1 only.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devcluster import claims, pki, processes
from devcluster.binaries import Binaries
from devcluster.kubeconfig import write_kubeconfig
from devcluster.node import cgroups, network

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE = "flywheel-node"
COMPONENTS = (*CONTROL_PLANE, NODE)
PORT_NAMES = ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler")
SERVICE_CIDR = "10.96.0.0/16"
READY_TIMEOUT = 90.0


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the component and its log tail."""


@dataclass
class State:
    """What `up` recorded: ports and pids of the running components."""

    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    bin_dir: str = ""
    network_index: int = 0


@dataclass(frozen=True)
class Cluster:
    """A local cluster rooted at `directory`."""

    directory: Path
    binaries: Binaries
    with_node: bool = True
    """Run the local node agent (needs root) so that pods really run."""
    apiserver_args: tuple[str, ...] = ()
    """Extra kube-apiserver flags (e.g. an audit log for a benchmark)."""

    @property
    def components(self) -> tuple[str, ...]:
        """The components this cluster runs, in start order."""
        return COMPONENTS if self.with_node else CONTROL_PLANE

    def binary(self, name: str) -> str:
        """The executable of a component."""
        return sys.executable if name == NODE else self.binaries.path(name)

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
            for name in self.components
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
            if name in COMPONENTS
        ):
            return self._reuse(state)
        self._require_root()
        self._down(keep_data=True)  # nothing of it runs: clear what a crash left
        registry = claims.Registry()
        with registry.locked():  # concurrent `up`s get distinct slots and ports
            try:
                claim = registry.claim(
                    self.directory,
                    PORT_NAMES,
                    wanted_index=state.network_index if state.ports else None,
                    wanted_ports=state.ports,
                    slot_free=lambda i: not network.bridge_exists(network.PodNetwork(i)),
                )
            except claims.ClaimError as error:
                raise ClusterError(str(error)) from error
        state = State(
            ports=claim.ports, bin_dir=str(self.binaries.bin_dir), network_index=claim.index
        )
        self._ensure_pki_and_kubeconfigs(state)
        for name in self.components:
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
        registry = claims.Registry()
        with registry.locked():
            registry.adopt(self.directory, state.network_index, state.ports)
        for name in self.components:
            if not processes.alive(state.pids.get(name, 0), self.binary(name)):
                if name == NODE:
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
        for name in reversed(COMPONENTS):
            if name in state.pids:
                # The node agent stops its pods first; give it their grace periods.
                timeout = 60.0 if name == NODE else 15.0
                processes.stop(state.pids[name], self.binary(name), timeout=timeout)
        registry = claims.Registry()
        with registry.locked():  # no `up` claims the slot while its network is removed
            holder = registry.read(state.network_index)
            ours = holder is None or holder.directory == str(self.directory)
            if NODE in state.pids and ours:
                # A node agent that died (kill -9) leaves its pods, their namespaces and the
                # bridge behind: the processes inside this network's pod namespaces go.
                plan = network.PodNetwork(state.network_index)
                network.remove_pod_namespaces(plan)
                network.remove_bridge(plan)
                cgroups.remove_recorded(self.directory / "node" / cgroups.RECORD)
            registry.release(self.directory)
        if NODE in state.pids and ours:
            subprocess.run(["rm", "-rf", str(self.directory / "node" / "pods")], check=True)
        processes.reap_children(list(state.pids.values()))
        (self.directory / "state.json").unlink(missing_ok=True)
        if not keep_data:  # volumes go with the etcd data that referenced them
            for data in ("etcd", "node"):
                subprocess.run(["rm", "-rf", str(self.directory / data)], check=True)

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
                str(network.PodNetwork(state.network_index).gateway),
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
        p, d, binary = state.ports, self.directory, self.binary(name)
        if name == "etcd":
            return [
                binary,
                "--name=flywheel",
                f"--data-dir={d / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p['etcd-client']}",
                f"--advertise-client-urls=http://127.0.0.1:{p['etcd-client']}",
                f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
                f"--initial-cluster=flywheel=http://127.0.0.1:{p['etcd-peer']}",
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ]
        k = self.pki
        if name == "kube-apiserver":
            return [
                binary,
                f"--etcd-servers=http://127.0.0.1:{p['etcd-client']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={p['apiserver']}",
                f"--cert-dir={d / 'apiserver-certs'}",
                f"--tls-cert-file={k / 'apiserver.crt'}",
                f"--tls-private-key-file={k / 'apiserver.key'}",
                f"--client-ca-file={k / 'ca.crt'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={k / 'sa.pub'}",
                f"--service-account-signing-key-file={k / 'sa.key'}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                "--profiling=false",
                "--endpoint-reconciler-type=none",
                *self.apiserver_args,
            ]
        kubeconfig = d / (
            "controller-manager.kubeconfig"
            if name == "kube-controller-manager"
            else "scheduler.kubeconfig"
        )
        common = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--profiling=false",
        ]
        if name == "kube-controller-manager":
            return [
                binary,
                *common,
                f"--secure-port={p['controller-manager']}",
                f"--cert-dir={d / 'controller-manager-certs'}",
                f"--root-ca-file={k / 'ca.crt'}",
                f"--service-account-private-key-file={k / 'sa.key'}",
                "--use-service-account-credentials=true",
                "--controllers=*",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
            ]
        if name == NODE:
            return [
                binary,
                "-m",
                "devcluster.node",
                f"--kubeconfig={d / 'kubeconfig'}",
                f"--dir={d / 'node'}",
                f"--api-port={p['apiserver']}",
                f"--version={self.binaries.bin_dir.parent.name.removeprefix('k8s-')}",
                f"--network-index={state.network_index}",
            ]
        return [
            binary,
            *common,
            f"--secure-port={p['scheduler']}",
            f"--cert-dir={d / 'scheduler-certs'}",
        ]

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
            if name == NODE and self._node_ready(state):
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

    def _node_ready(self, state: State) -> bool:
        url = f"https://127.0.0.1:{state.ports['apiserver']}/api/v1/nodes"
        try:
            with urllib.request.urlopen(url, timeout=2, context=self._client_context()) as answer:
                nodes = json.loads(answer.read())["items"]
        except OSError:
            return False
        return any(
            c["type"] == "Ready" and c["status"] == "True"
            for node in nodes
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
