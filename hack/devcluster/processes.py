"""Start, find and stop the cluster's daemon processes.

Processes run in their own session (they outlive `make cluster-up`) with output in a log file.
Stopping sends SIGTERM, waits, then SIGKILLs, and only ever a pid the caller recorded whose
command line still starts with the binary it started (a reused pid is left alone).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

# Daemons started by this process, so that stopping them also reaps them (no zombies) and the
# Popen objects are not garbage-collected while their process runs (a ResourceWarning).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon; its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    _CHILDREN[process.pid] = process
    return process.pid


def cmdline(pid: int) -> list[str]:
    """The command line of a live process, or [] when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    if _is_zombie(pid):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def start_time(pid: int) -> str:
    """When a process started (clock ticks since boot, as /proc says), "" when it is gone: with
    the pid, it names one process even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    fields = stat.rsplit(")", 1)[-1].split()
    return "" if fields[0] == "Z" else fields[19]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def alive(pid: int, binary: str) -> bool:
    """Whether `pid` is still the process we started (guards against pid reuse)."""
    argv = cmdline(pid)
    return bool(argv) and argv[0] == binary


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _CHILDREN[pid]
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, binary: str, timeout: float = 15.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL (at once with no timeout); the process is
    reaped if it is ours."""
    if not alive(pid, binary):
        _reap(pid)
        return
    os.kill(pid, signal.SIGTERM if timeout > 0 else signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid, binary):
            _reap(pid)
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    while alive(pid, binary):
        _reap(pid)
        time.sleep(0.05)
    _reap(pid)


def reap_children(pids: list[int], timeout: float = 10.0) -> None:
    """Wait for stopped daemons that this process started (no zombie, no ResourceWarning)."""
    for pid in pids:
        child = _CHILDREN.get(pid)
        if child is None:
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=timeout)
        if child.returncode is not None:
            del _CHILDREN[pid]


def mentioning(text: str) -> Iterator[int]:
    """Pids of processes whose command line contains `text` (for checks: nothing is stopped by
    what its command line mentions)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        if any(text in part for part in cmdline(int(entry.name))):
            yield int(entry.name)


def rss_kib(pid: int) -> tuple[int, int]:
    """Current and peak resident memory of a process, in KiB (0, 0 when gone)."""
    values = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in values:
                values[key] = int(rest.split()[0])
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]
