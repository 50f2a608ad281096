"""A pod's sandbox: one network and mount namespace, and a private root per container.

A `sleep infinity` process created inside `ip netns exec <ns> unshare --mount --uts` holds the
pod's namespaces (the "pause" process); the UTS namespace carries the pod's hostname (its
`spec.hostname`, else its name, as the kubelet sets it). Each container gets an overlay whose
lower layer is the host root and whose upper layer lives in the pod directory, mounted inside
the pod's mount namespace with `/proc`, a small `/dev`, the host's state and home directories
hidden (`isolation`: no cluster's state, no other pod's volumes, a fresh /tmp), and every
volumeMount bind-mounted at its manifest path. New directories land in the upper layer, so
nothing of a pod appears on the host's filesystem, and all its mounts vanish with its namespace.
Containers run as `nsenter ... chroot <root> env -C <workingDir> <command>`, so the project's
installed environment stands in for the image.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from devcluster.node import isolation
from devcluster.node.network import PodNetwork, create_pod_network, delete_pod_network


@dataclass(frozen=True)
class Mount:
    """A bind mount into a container's root."""

    source: Path
    target: str
    read_only: bool = False
    hide: tuple[str, ...] = ()
    """Host directories below `source` to cover again with an empty tmpfs."""


@dataclass
class ContainerRoot:
    """A container's root file system."""

    merged: Path
    upper: Path
    work: Path
    mounts: list[Mount] = field(default_factory=list)
    layers: list[isolation.Layer] = field(default_factory=list)
    lower: str = "/"
    """The overlay's lower layer: the host root, or an image's root file system."""


class SandboxError(Exception):
    """The sandbox or a container root could not be set up."""


class Sandbox:
    """The namespaces of one pod."""

    def __init__(self, directory: Path, netns: str, plan: PodNetwork, hostname: str = "") -> None:
        self.directory = directory
        self.netns = netns
        self.plan = plan
        self.hostname = hostname or netns
        self.address = ""
        self.pause: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        """The pause process holding the namespaces."""
        assert self.pause is not None
        return self.pause.pid

    async def start(self, address: str) -> None:
        """Create the network namespace and the pause process."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.address = address
        await asyncio.to_thread(create_pod_network, self.plan, self.netns, address)
        self.pause = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            self.netns,
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            'hostname "$0" && exec sleep infinity',
            self.hostname[:63],
            start_new_session=True,
        )
        for _ in range(200):
            if _comm(self.pause.pid) == "sleep":
                return
            await asyncio.sleep(0.01)
        raise SandboxError("the pod's pause process did not start")

    def nsenter(self, *, net: bool = True) -> list[str]:
        """The prefix that runs a command inside the pod's namespaces."""
        prefix = ["nsenter", f"--mount=/proc/{self.pid}/ns/mnt"]
        if net:
            prefix += [f"--net=/proc/{self.pid}/ns/net", f"--uts=/proc/{self.pid}/ns/uts"]
        return [*prefix, "--"]

    async def shell(self, script: str) -> None:
        """Run a setup script inside the pod's mount namespace."""
        process = await asyncio.create_subprocess_exec(
            *self.nsenter(net=False),
            "sh",
            "-euc",
            script,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = await process.communicate()
        if process.returncode != 0:
            raise SandboxError(f"setting up the container root failed: {output.decode()[-1500:]}")

    async def prepare_root(
        self, name: str, mounts: list[Mount], *, read_only: bool, lower: Path | None = None
    ) -> ContainerRoot:
        """A fresh root for one run of a container: over the host root (hiding the host's
        state), or over an image's root file system (`lower`: nothing of the host to hide; the
        pod's /etc/hosts and /etc/hostname mounted in)."""
        base = self.directory / "containers" / name
        if lower is None:
            # The pod directory is <node dir>/pods/<uid>.
            layers = isolation.host_view(self.directory.parents[1], PROJECT)
            mounts = [*mounts, *_shadowed_environment(mounts, layers)]
        else:
            layers = []
            mounts = [*self._etc_files(), *mounts]
        root = ContainerRoot(base / "rootfs", base / "upper", base / "work", mounts, layers)
        if lower is not None:
            root.lower = str(lower)
        await self.shell(_root_script(root, read_only=read_only))
        return root

    def _etc_files(self) -> list[Mount]:
        """The pod's /etc/hosts and /etc/hostname, as the kubelet writes them."""
        etc = self.directory / "etc"
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hostname").write_text(f"{self.hostname}\n")
        address = self.address or "127.0.1.1"
        (etc / "hosts").write_text(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost "
            f"ip6-localhost ip6-loopback\n{address}\t{self.hostname}\n"
        )
        return [Mount(etc / "hosts", "/etc/hosts"), Mount(etc / "hostname", "/etc/hostname")]

    def command(
        self, root: ContainerRoot, argv: list[str], *, cwd: str, user: tuple[int, int] | None
    ) -> list[str]:
        """The host command line that runs `argv` as the container process."""
        chroot = ["chroot"]
        if user is not None:
            chroot += [f"--userspec={user[0]}:{user[1]}", f"--groups={user[1]}"]
        return [*self.nsenter(), *chroot, str(root.merged), "env", "-C", cwd or "/", "--", *argv]

    async def stop(self) -> None:
        """Kill the pause process and remove the network namespace (mounts go with it)."""
        if self.pause is not None and self.pause.returncode is None:
            _kill_group(self.pause.pid, signal.SIGKILL)
            await self.pause.wait()
        await asyncio.to_thread(delete_pod_network, self.netns)


PROJECT = Path(__file__).resolve().parents[3]
"""The checkout whose virtualenv stands in for images (editable installs point into it)."""


def _shadowed_environment(mounts: list[Mount], layers: list[isolation.Layer]) -> list[Mount]:
    """Bind the project and its Python back when a volume hides them.

    A checkout under /tmp disappears behind a pod's `/tmp` emptyDir; the image would still have
    its interpreter, so the node mounts the environment again, read-only, on top (and hides
    again what `isolation` masks inside it, such as a `.cluster` in the checkout).
    """
    needed = {PROJECT, Path(sys.prefix), Path(sys.executable).resolve().parents[1]}
    extra = []
    for path in sorted(needed):
        text = str(path)
        if any(text == m.target or text.startswith(m.target.rstrip("/") + "/") for m in mounts):
            hide = isolation.masks_under(layers, os.path.realpath(path))
            extra.append(Mount(path, text, read_only=True, hide=hide))
    return extra


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _kill_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _interpreter_dirs() -> list[str]:
    """Directories on the way to the project's Python, opened up for non-root containers.

    The host keeps the interpreter under /root; making those directories traversable in the
    container's upper layer (a metadata copy-up) changes nothing on the host.
    """
    dirs: list[str] = []
    for path in (Path(sys.executable), Path(sys.executable).resolve(), Path(sys.prefix)):
        for parent in reversed(path.parents):
            if str(parent) != "/" and str(parent) not in dirs:
                dirs.append(str(parent))
    return dirs


_MAKE_DIR = 'mkdir -p "$1" && readlink -f "$1"'
_MAKE_FILE = 'mkdir -p "$(dirname "$1")" && touch "$1" && readlink -f "$1"'


def _root_script(root: ContainerRoot, *, read_only: bool) -> str:
    q = shlex.quote
    m = str(root.merged)
    lines = [
        f"rm -rf {q(str(root.upper))} {q(str(root.work))}",
        f"mkdir -p {q(m)} {q(str(root.upper))} {q(str(root.work))}",
        f"mount -t overlay overlay -o lowerdir={q(root.lower)},upperdir={q(str(root.upper))},"
        f"workdir={q(str(root.work))} {q(m)}",
        f"mount -t proc proc {q(m)}/proc",
        f"mount --rbind /sys {q(m)}/sys",
        # The pod network namespace's sysfs (`ip netns exec` mounts it; no cgroup hierarchy in
        # it), read-only all the way down, as runtimes mount /sys for unprivileged containers.
        f"findmnt -R -n -l -o TARGET {q(m)}/sys | while read -r t; do"
        ' mount -o remount,bind,ro "$t"; done',
        f"mount -t tmpfs -o mode=755,size=65536k devtmpfs {q(m)}/dev",
        f"mkdir -p {q(m)}/dev/shm {q(m)}/dev/pts",
        f"mount -t tmpfs -o mode=1777,size=65536k shm {q(m)}/dev/shm",
    ]
    for device in ("null", "zero", "full", "random", "urandom", "tty"):
        lines += [f"touch {q(m)}/dev/{device}", f"mount --bind /dev/{device} {q(m)}/dev/{device}"]
    for link, target in (
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ):
        lines.append(f"ln -sf {target} {q(m)}/dev/{link}")
    lines += [f"chmod o+rx {q(m + d)} 2>/dev/null || true" for d in _interpreter_dirs()]
    lines += isolation.setup_lines(root.layers, m, str(root.upper.parent / "isolation"))
    for mount in sorted(root.mounts, key=lambda x: x.target.count("/")):
        # Create and resolve the mount point inside the root (chroot), so that symlinks such as
        # /var/run -> /run resolve in the container's tree and never touch the host's.
        make = _MAKE_FILE if mount.source.is_file() else _MAKE_DIR
        lines += [
            f"target=$(chroot {q(m)} sh -c {q(make)} _ {q(mount.target)})",
            f'mount --bind {q(str(mount.source))} {q(m)}"$target"',
            isolation.cover_line("target"),
        ]
        if mount.read_only:
            lines.append(f'mount -o remount,bind,ro {q(m)}"$target"')
        host = os.path.realpath(mount.source)
        lines += isolation.hide_lines(f'{q(m)}"$target"', host, mount.hide)
    lines += isolation.finish_lines(root.layers, m, read_only=read_only)
    if read_only:
        lines.append(f"mount -o remount,ro {q(m)}")
    return "\n".join(lines)
