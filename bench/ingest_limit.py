"""The limited run of bench/ingest.py: the flywheel ingest of a large CSV in a memory cgroup.

A cgroup v1 memory cgroup with the limit as its memory.limit_in_bytes (root needed), created
under this process's own memory cgroup and removed afterwards; without one, only ru_maxrss is
compared with the limit, which nothing then enforces.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from ingest_sides import Csv, Run, describe_failure, verdict

CGROUP_MOUNT = Path("/sys/fs/cgroup/memory")


def own_memory_cgroup() -> Path | None:
    """The directory of this process's cgroup v1 memory cgroup, when the controller is mounted."""
    if not (CGROUP_MOUNT / "memory.limit_in_bytes").exists():
        return None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            mine = CGROUP_MOUNT / path.lstrip("/")
            return mine if mine.is_dir() else CGROUP_MOUNT
    return CGROUP_MOUNT


def fstype(path: Path) -> str:
    """The file system type of the mount holding `path`."""
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        mount = fields[1]
        inside = resolved == mount or resolved.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) >= len(best):
            best, kind = mount, fields[2]
    return kind


def read_counter(cgroup: Path, name: str) -> str:
    """A cgroup file's content, `?` if it cannot be read."""
    try:
        return (cgroup / name).read_text().strip()
    except OSError:
        return "?"


def limited_run(
    csv: Csv,
    work: Path,
    limit: int,
    label: str,
    run_side: Callable[[str, Csv, Path, Path | None], Run],
) -> None:
    """The flywheel ingest of `csv` in a memory cgroup limited to `limit` bytes; what happened.

    `run_side` is ingest.py's, passed in: this module does not import the entry point.
    """
    print()
    print(f"flywheel ingest of a {csv.label} CSV ({csv.rows:,} rows, {csv.bytes / 1e6:.0f} MB)")
    print(f"under a {label} memory limit ({limit:,} bytes)")
    if fstype(work) == "tmpfs":
        print(
            f"  note: {work} is on tmpfs, whose files (the Parquet snapshot written) count as "
            "memory that cannot be reclaimed; pass --work on a disk"
        )
    parent = own_memory_cgroup()
    cgroup: Path | None = None
    why = "no cgroup v1 memory controller at /sys/fs/cgroup/memory"
    if parent is not None:
        candidate = parent / f"flywheel-bench-{os.getpid()}"
        try:
            candidate.mkdir()
            cgroup = candidate
            (cgroup / "memory.limit_in_bytes").write_text(str(limit))
            if (cgroup / "memory.memsw.limit_in_bytes").exists():
                (cgroup / "memory.memsw.limit_in_bytes").write_text(str(limit))
        except OSError as error:
            why = f"cannot set up a memory cgroup under {parent}: {error}"
            if cgroup is not None:
                cgroup.rmdir()
            cgroup = None
    if cgroup is None:
        print(f"  cgroups unavailable ({why}): the limit is NOT enforced;")
        print("  the ingest runs unconstrained and only its ru_maxrss is compared with the limit")
        run = run_side("flywheel", csv, work, None)
        print_limited(run, limit, None)
        return
    try:
        print(f"  cgroup {cgroup}")
        run = run_side("flywheel", csv, work, cgroup)
        print_limited(run, limit, cgroup)
    finally:
        remove_cgroup(cgroup)


def print_limited(run: Run, limit: int, cgroup: Path | None) -> None:
    """What the limited run reports."""
    killed = run.exit in (-signal.SIGKILL, 128 + signal.SIGKILL)
    oom_kills = max_usage = failcnt = "?"
    if cgroup is not None:
        control = dict(
            line.split(maxsplit=1)
            for line in read_counter(cgroup, "memory.oom_control").splitlines()
            if " " in line
        )
        oom_kills = control.get("oom_kill", "?")
        max_usage = read_counter(cgroup, "memory.max_usage_in_bytes")
        failcnt = read_counter(cgroup, "memory.failcnt")
    if run.ok:
        print(
            f"  completed: {run.figures['rows']:,} rows in {run.figures['seconds']:.2f} s, "
            f"{run.rows_per_s:,.0f} rows/s"
        )
    elif killed:
        print(f"  OOM-KILLED (SIGKILL) after {run.wall:.1f} s")
    else:
        print(f"  {describe_failure('the ingest', run)}")
    rss = run.peak_mib
    print(
        f"  ru_maxrss (resident memory of the process): {rss:.0f} MiB = "
        f"{rss * 2**20 / limit:.0%} of the limit"
    )
    if cgroup is not None:
        usage = f"{int(max_usage) / 2**20:.0f} MiB" if max_usage.isdigit() else max_usage
        print(
            f"  memory.max_usage_in_bytes (the cgroup's peak, page cache included): {usage}; "
            f"memory.failcnt {failcnt}; OOM kills {oom_kills}"
        )
        print(
            "  (RSS also counts pages of shared libraries already cached by other processes, "
            "which the cgroup does not charge: it may exceed the cgroup's figure)"
        )
        print(f"  completed under the enforced limit: {verdict(run.ok)}")
    else:
        within = run.ok and rss * 2**20 <= limit
        print(f"  ru_maxrss within the limit (not enforced): {verdict(within)}")


def remove_cgroup(cgroup: Path) -> None:
    """Remove the bench's cgroup (its processes have ended; a straggler is killed by pid)."""
    for _ in range(50):
        pids = [int(p) for p in read_counter(cgroup, "cgroup.procs").split() if p.isdigit()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    try:
        cgroup.rmdir()
    except OSError as error:
        print(f"  could not remove {cgroup}: {error}")
