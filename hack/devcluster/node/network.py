"""Pod networking: a bridge owned by the agent, one network namespace and veth pair per pod.

The bridge `fwbr<i>` holds the gateway address 10.244.<i>.1/24 on the host; each pod gets the
next free address, its own namespace (so replicas can listen on the same port) and a default route
via the gateway. The agent also forwards <gateway>:6443 to the API server on loopback, so pods
reach the API while the API server itself listens on 127.0.0.1 only. No iptables: Services get
no ClusterIP routing (pods talk to pod IPs and to the API server).

Nodes of one cluster route between their pod networks through the host: each bridge forwards
(`net.ipv4.conf.fwbr<i>.forwarding`, that interface only; the host's global `ip_forward` is left
as it is), and a policy rule sends what arrives on the bridge to the node's own routing table,
which lets through only the cluster's pod networks (`throw`: on to the main table's routes of the
bridges) and answers everything else with "network unreachable". So pods reach the pods of
their own cluster's nodes and the host, never another local cluster or the outside network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

API_PORT_ON_GATEWAY = 6443
ROUTE_TABLE_BASE = 20000
RULE_PRIORITY = 100


@dataclass(frozen=True)
class PodNetwork:
    """The addresses and names of one cluster's pod network; `index` keeps clusters apart.

    Cluster `i` owns bridge `fwbr<i>`, pod CIDR 10.244.<i>.0/24 with the gateway at .1, and the
    network namespaces named `fwpod<i>-*`, so a test cluster and a development cluster can run
    side by side without touching each other's pods.
    """

    index: int = 0

    @property
    def bridge(self) -> str:
        """The bridge's interface name."""
        return f"fwbr{self.index}"

    @property
    def cidr(self) -> ipaddress.IPv4Network:
        """The pod CIDR."""
        return ipaddress.IPv4Network(f"10.244.{self.index}.0/24")

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        """The host's address on the bridge (the node's InternalIP)."""
        return self.cidr.network_address + 1

    @property
    def netns_prefix(self) -> str:
        """The prefix of this cluster's pod namespaces."""
        return f"fwpod{self.index}-"

    @property
    def route_table(self) -> int:
        """The routing table of what this node's pods send (policy rule on the bridge)."""
        return ROUTE_TABLE_BASE + self.index


IP = shutil.which("ip") or "/usr/sbin/ip"  # root's PATH has /usr/sbin; a minimal PATH may not


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ip` (iproute2)."""
    return subprocess.run([IP, *args], capture_output=True, text=True, check=check)


def bridge_exists(plan: PodNetwork) -> bool:
    """Whether the bridge of a pod network exists on this host. Which cluster owns an index is
    decided by its claim (`devcluster.claims`), not by this."""
    return ip("link", "show", plan.bridge, check=False).returncode == 0


def ensure_bridge(plan: PodNetwork) -> None:
    """Create the bridge with the gateway address (idempotent)."""
    if ip("link", "show", plan.bridge, check=False).returncode != 0:
        ip("link", "add", plan.bridge, "type", "bridge")
    if str(plan.gateway) not in ip("-4", "addr", "show", plan.bridge).stdout:
        ip("addr", "add", f"{plan.gateway}/{plan.cidr.prefixlen}", "dev", plan.bridge)
    ip("link", "set", plan.bridge, "up")


def remove_bridge(plan: PodNetwork) -> None:
    """Delete the bridge (its veth ports go with their namespaces) and its routing."""
    remove_routing(plan)
    ip("link", "del", plan.bridge, check=False)


def ensure_routing(plan: PodNetwork, peers: tuple[PodNetwork, ...]) -> None:
    """Route what this node's pods send to the pod networks of the cluster's nodes (`peers`,
    the other nodes) and nowhere else (idempotent; the bridge exists)."""
    remove_routing(plan)
    table = str(plan.route_table)
    for network in (plan, *peers):
        ip("route", "add", "throw", str(network.cidr), "table", table)
    ip("route", "add", "unreachable", "default", "table", table)
    ip("rule", "add", "iif", plan.bridge, "lookup", table, "priority", str(RULE_PRIORITY))
    Path(f"/proc/sys/net/ipv4/conf/{plan.bridge}/forwarding").write_text("1\n")


def remove_routing(plan: PodNetwork) -> None:
    """Remove the bridge's policy rule and routing table (what a killed agent left too)."""
    table = str(plan.route_table)
    while ip("rule", "del", "iif", plan.bridge, "lookup", table, check=False).returncode == 0:
        pass
    ip("route", "flush", "table", table, check=False)


def leftover_namespaces(plan: PodNetwork) -> list[str]:
    """This cluster's pod namespaces that exist on the host."""
    listing = ip("netns", "list", check=False).stdout.split("\n")
    return [line.split()[0] for line in listing if line.startswith(plan.netns_prefix)]


def pids_in_namespace(name: str) -> list[int]:
    """The processes whose network namespace is the named one (a pod's pause process and
    containers: everything a pod runs lives there)."""
    return [int(p) for p in ip("netns", "pids", name, check=False).stdout.split()]


def remove_pod_namespaces(plan: PodNetwork) -> None:
    """Kill every process inside this network's pod namespaces and delete the namespaces
    (what a node agent that died by SIGKILL left behind). Nothing outside them is touched."""
    for name in leftover_namespaces(plan):
        pids = pids_in_namespace(name)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        delete_pod_network(name)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a killed pod process whose parent has not reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class Addresses:
    """Hands out pod addresses from the pod CIDR."""

    def __init__(self, plan: PodNetwork) -> None:
        self.plan = plan
        self._used: set[ipaddress.IPv4Address] = {plan.gateway}

    def take(self) -> ipaddress.IPv4Address:
        """A free address."""
        for host in self.plan.cidr.hosts():
            if host not in self._used:
                self._used.add(host)
                return host
        raise RuntimeError(f"pod CIDR {self.plan.cidr} is exhausted")

    def release(self, address: ipaddress.IPv4Address) -> None:
        """Give an address back."""
        self._used.discard(address)


def create_pod_network(plan: PodNetwork, name: str, address: str) -> None:
    """A namespace with `eth0` at `address`, its peer on the bridge, and a default route."""
    host_end = "veth" + name.removeprefix(plan.netns_prefix)[:11]
    ip("netns", "add", name)
    ip("link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", name)
    ip("link", "set", host_end, "master", plan.bridge, "up")
    ip("-n", name, "addr", "add", f"{address}/{plan.cidr.prefixlen}", "dev", "eth0")
    ip("-n", name, "link", "set", "eth0", "up")
    ip("-n", name, "link", "set", "lo", "up")
    ip("-n", name, "route", "add", "default", "via", str(plan.gateway))


def delete_pod_network(name: str) -> None:
    """Remove a pod's namespace; its veth pair disappears with it."""
    ip("netns", "del", name, check=False)


class ApiForwarder:
    """TCP forwarding from <gateway>:6443 to the API server on loopback."""

    def __init__(self, plan: PodNetwork, target_port: int) -> None:
        self.plan = plan
        self.target_port = target_port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen on the gateway address."""
        self._server = await asyncio.start_server(
            self._handle, str(self.plan.gateway), API_PORT_ON_GATEWAY, reuse_address=True
        )

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError as error:
            log.warning("cannot reach the API server: %s", error)
            writer.close()
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
