"""Host-wide claims on pod network indices and ports, so concurrent `cluster-up`s never collide.

Every cluster claims one slot `<i>` per node: that node's pod network (bridge `fwbr<i>`,
10.244.<i>.0/24, namespaces `fwpod<i>-*`); the first slot also records the cluster's ports. A
claim is the file `claims/<i>.json` under the claims directory (`/run/flywheel-devcluster` for
root, `/tmp/flywheel-devcluster-<uid>` otherwise, `FLYWHEEL_DEVCLUSTER_CLAIMS` to override),
created with O_CREAT|O_EXCL while holding an exclusive `flock` on `lock` there, and records the
owning cluster directory, its ports and the process that made it. Ports come from below the
kernel's ephemeral range, so no outgoing connection takes one between the pick and the
component's bind, and never one another live claim holds. A claim is live while its maker runs
or while the owner's `state.json` records this slot and a live process; a stale claim is taken
over. `release` removes only the caller's own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from devcluster import processes

SLOTS = 256
PORT_BASE = 20000


class ClaimError(RuntimeError):
    """No slot or no port is free."""


@dataclass(frozen=True)
class Claim:
    """One cluster's slot: its network index and ports."""

    index: int
    directory: str
    ports: dict[str, int] = field(default_factory=dict)
    claimer: int = 0
    """The process that made the claim (it runs `up()`)."""
    claimer_start: str = ""
    """Its start time, so a reused pid does not keep the claim alive."""


def default_root() -> Path:
    """Where claims live on this host (for this user)."""
    override = os.environ.get("FLYWHEEL_DEVCLUSTER_CLAIMS")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/flywheel-devcluster")
    return Path(f"/tmp/flywheel-devcluster-{os.geteuid()}")


class Registry:
    """The claims of every local cluster on this host."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the host-wide lock (blocks until the other holder is done)."""
        (self.root / "claims").mkdir(parents=True, exist_ok=True, mode=0o755)
        with (self.root / "lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _path(self, index: int) -> Path:
        return self.root / "claims" / f"{index}.json"

    def read(self, index: int) -> Claim | None:
        """The claim on a slot, None when unclaimed (or unreadable)."""
        try:
            return Claim(**json.loads(self._path(index).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def claims(self) -> list[Claim]:
        """Every claim on file."""
        found = []
        for path in sorted((self.root / "claims").glob("*.json")):
            if path.stem.isdigit() and (claim := self.read(int(path.stem))) is not None:
                found.append(claim)
        return found

    def owner(self, index: int) -> str | None:
        """The directory holding a live claim on a slot."""
        claim = self.read(index)
        return claim.directory if claim is not None and live(claim) else None

    def claim(
        self,
        directory: Path,
        names: tuple[str, ...],
        *,
        wanted_index: int | None = None,
        wanted_ports: dict[str, int] | None = None,
        slot_free: Callable[[int], bool] = lambda _: True,
    ) -> Claim:
        """Claim one slot and ports for `directory` (call while `locked()`); see `claim_slots`."""
        wanted = [wanted_index] if wanted_index is not None else []
        return self.claim_slots(
            directory,
            names,
            1,
            wanted_indices=wanted,
            wanted_ports=wanted_ports,
            slot_free=slot_free,
        )[0]

    def claim_slots(
        self,
        directory: Path,
        names: tuple[str, ...],
        count: int,
        *,
        wanted_indices: list[int] | None = None,
        wanted_ports: dict[str, int] | None = None,
        slot_free: Callable[[int], bool] = lambda _: True,
    ) -> list[Claim]:
        """Claim `count` slots (one per node) for `directory`, the first with the ports (call
        while `locked()`).

        The directory's own claims are kept; else the `wanted_indices` that are free, else the
        lowest free slots (`slot_free` adds a host check, such as no bridge of that name). The
        wanted ports are kept when bindable and no other live claim holds them. Claims of the
        directory beyond the chosen slots are removed.
        """
        mine = str(directory)
        others = [c for c in self.claims() if c.directory != mine and live(c)]
        taken = {c.index for c in others}
        # Its own slots first, in the order wanted, the one with the ports leading.
        wanted = [i for i in wanted_indices or () if i >= 0]
        own_claims = sorted(
            (c for c in self.claims() if c.directory == mine),
            key=lambda c: (
                c.index not in wanted,
                wanted.index(c.index) if c.index in wanted else 0,
                not c.ports,
            ),
        )
        own = [c.index for c in own_claims]
        candidates = [*own, *wanted, *range(SLOTS)]
        chosen: list[int] = []
        for i in candidates:
            if len(chosen) == count:
                break
            if i not in chosen and i not in taken and (i in own or slot_free(i)):
                chosen.append(i)
        if len(chosen) < count:
            raise ClaimError(
                f"no {count - len(chosen)} free local-cluster slot(s) (pod network index) "
                "on this host"
            )
        busy = {port for c in others for port in c.ports.values()}
        ports: dict[str, int] = {}
        for name in names:
            port = (wanted_ports or {}).get(name)
            if port and port not in busy and port not in ports.values() and bindable(port):
                ports[name] = port
            else:
                ports[name] = free_port(busy | set(ports.values()))
        for stale in own:
            if stale not in chosen:
                self._path(stale).unlink(missing_ok=True)
        started = processes.start_time(os.getpid())
        made = [
            Claim(index, mine, ports if n == 0 else {}, os.getpid(), started)
            for n, index in enumerate(chosen)
        ]
        for claim in made:
            self._write(claim)
        return made

    def adopt(self, directory: Path, index: int, ports: dict[str, int]) -> bool:
        """Record a claim on the slot and ports a running cluster already uses (one started
        before claims existed, or whose claims directory was emptied by a reboot); False when
        another live claim holds the slot (call while `locked()`)."""
        current = self.read(index)
        if current is not None and current.directory == str(directory):
            return True
        if current is not None and live(current):
            return False
        self._write(Claim(index, str(directory), dict(ports), 0, ""))
        return True

    def _write(self, claim: Claim) -> None:
        self._path(claim.index).unlink(missing_ok=True)  # ours, or stale: taken over
        fd = os.open(self._path(claim.index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(asdict(claim), indent=2))

    def release(self, directory: Path) -> list[int]:
        """Remove the claims `directory` holds, and only those (call while `locked()`); the
        slots released."""
        released = []
        for claim in self.claims():
            if claim.directory == str(directory):
                self._path(claim.index).unlink(missing_ok=True)
                released.append(claim.index)
        return released


def live(claim: Claim) -> bool:
    """Whether a claim still belongs to a running (or starting) cluster."""
    started = processes.start_time(claim.claimer) if claim.claimer else ""
    if started and started == claim.claimer_start:
        return True
    try:
        state = json.loads((Path(claim.directory) / "state.json").read_text())
    except (OSError, ValueError):
        return False
    if claim.index not in {state.get("network_index"), *state.get("network_indices", ())}:
        return False
    return any(processes.cmdline(int(pid)) for pid in state.get("pids", {}).values())


def bindable(port: int) -> bool:
    """Whether a server could listen on 127.0.0.1:`port` now (as Go servers bind: with
    SO_REUSEADDR, so sockets in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ephemeral_low() -> int:
    """The lowest port the kernel hands out to outgoing connections and `bind(0)`."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(busy: set[int]) -> int:
    """The lowest bindable port from PORT_BASE up to the ephemeral range, not in `busy`."""
    for port in range(PORT_BASE, max(ephemeral_low(), PORT_BASE + 1000)):
        if port not in busy and bindable(port):
            return port
    raise ClaimError(f"no free port between {PORT_BASE} and the ephemeral range")
