"""The components of a local cluster: their names, the recorded state, their command lines.

The control plane is etcd, kube-apiserver, kube-controller-manager and kube-scheduler; then one
node agent per node (`flywheel-node`, `flywheel-node-2`, ...), each in a pod network slot of its
own (`State.network_indices`), named `flywheel-<host>[-<n>]` and labelled with a zone of its own
(`local-a`, `local-b`, ...).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.binaries import Binaries
from devcluster.node.agent import default_node_name

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
NODE = "flywheel-node"
COMPONENTS = (*CONTROL_PLANE, NODE)
PORT_NAMES = ("etcd-client", "etcd-peer", "apiserver", "controller-manager", "scheduler")
SERVICE_CIDR = "10.96.0.0/16"


@dataclass
class State:
    """What `up` recorded: ports and pids of the running components."""

    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    bin_dir: str = ""
    network_index: int = 0
    """The first node's pod network slot."""
    network_indices: list[int] = field(default_factory=list)
    """Every node's pod network slot, in node order (empty in a state file from before
    multi-node clusters: then one node, on `network_index`)."""

    def node_indices(self) -> list[int]:
        """The recorded nodes' pod network slots, in node order."""
        return self.network_indices or [self.network_index]


def node_component(number: int) -> str:
    """The component name of node `number` (1-based): `flywheel-node`, `flywheel-node-2`, ..."""
    return NODE if number == 1 else f"{NODE}-{number}"


def node_number(component: str) -> int:
    """The node number (1-based) of a node component's name (`node_component`'s inverse)."""
    return 1 if component == NODE else int(component.removeprefix(f"{NODE}-"))


def is_node(component: str) -> bool:
    """Whether a component is a node agent."""
    return component == NODE or component.startswith(f"{NODE}-")


def node_name(number: int) -> str:
    """The Node object's name: `flywheel-<host>`, then `flywheel-<host>-2`, ..."""
    first = default_node_name()
    return first if number == 1 else f"{first[:60]}-{number}"


def zone(number: int) -> str:
    """The zone label of node `number`: each node is a zone of its own (`local-a`, ...)."""
    return f"local-{chr(ord('a') + number - 1)}"


def command_line(
    name: str,
    state: State,
    *,
    directory: Path,
    binaries: Binaries,
    node_dir: Callable[[int], Path],
    apiserver_args: tuple[str, ...] = (),
) -> list[str]:
    """The command line of one component of the cluster in `directory`, on the recorded ports."""
    p, d = state.ports, directory
    binary = sys.executable if is_node(name) else binaries.path(name)
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
    k = d / "pki"
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
            f"--kubelet-client-certificate={k / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={k / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={k / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            *apiserver_args,
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
    if is_node(name):
        return _node_command_line(name, state, directory, binaries, node_dir)
    return [
        binary,
        *common,
        f"--secure-port={p['scheduler']}",
        f"--cert-dir={d / 'scheduler-certs'}",
    ]


def _node_command_line(
    name: str,
    state: State,
    directory: Path,
    binaries: Binaries,
    node_dir: Callable[[int], Path],
) -> list[str]:
    indices = state.node_indices()
    number = node_number(name)
    index = indices[number - 1]
    return [
        sys.executable,
        "-m",
        "devcluster.node",
        f"--kubeconfig={directory / 'kubeconfig'}",
        f"--dir={node_dir(number)}",
        f"--api-port={state.ports['apiserver']}",
        f"--version={binaries.bin_dir.parent.name.removeprefix('k8s-')}",
        f"--network-index={index}",
        *(f"--peer-network-index={i}" for i in indices if i != index),
        f"--node-name={node_name(number)}",
        f"--zone={zone(number)}",
        f"--kubelet-cert={directory / 'pki' / f'kubelet-{number}.crt'}",
        f"--kubelet-key={directory / 'pki' / f'kubelet-{number}.key'}",
        f"--client-ca={directory / 'pki' / 'ca.crt'}",
    ]
