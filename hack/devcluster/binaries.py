"""The pinned upstream binaries: where they live, and building them when they are missing.

`hack/build-k8s.sh` builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
etcd and helm from the Go module proxy into `~/.cache/flywheel/k8s-<version>/bin` (or under
`FLYWHEEL_CACHE`), and beside them the tests' `kstatus` CLI (hack/kstatus, the cli-utils kstatus
library). A warm cache makes this a no-op; a cold build takes minutes. The script builds only
what is missing or stale, so a cache that lacks only kstatus builds kstatus alone (seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HACK = Path(__file__).resolve().parents[1]
BUILD_SCRIPT = HACK / "build-k8s.sh"
VERSIONS_FILE = HACK / "versions.env"
TOOLS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "helm",
    "kstatus",
)


class BuildError(RuntimeError):
    """The binaries could not be built; the message carries the end of the build output."""


def pinned_versions() -> dict[str, str]:
    """The pins in hack/versions.env."""
    pins = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#"):
            pins[key.strip()] = value.strip()
    return pins


def cache_root() -> Path:
    """Where builds and Go caches live."""
    return Path(os.environ.get("FLYWHEEL_CACHE", Path.home() / ".cache" / "flywheel"))


@dataclass(frozen=True)
class Binaries:
    """The directory holding the pinned binaries."""

    bin_dir: Path

    def path(self, tool: str) -> str:
        """The absolute path of one tool."""
        return str(self.bin_dir / tool)

    def missing(self) -> list[str]:
        """Tools not present (or not executable)."""
        return [t for t in TOOLS if not os.access(self.bin_dir / t, os.X_OK)]


def default_binaries() -> Binaries:
    """The binaries of the pinned Kubernetes version."""
    return Binaries(cache_root() / f"k8s-{pinned_versions()['K8S_VERSION']}" / "bin")


def ensure_binaries(binaries: Binaries | None = None) -> Binaries:
    """The binaries, built first when any is missing; raises BuildError with the log tail."""
    binaries = binaries or default_binaries()
    if not binaries.missing():
        return binaries
    print(f"devcluster: building {', '.join(binaries.missing())} (cold build)", file=sys.stderr)
    result = subprocess.run(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if result.returncode != 0 or binaries.missing():
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise BuildError(f"{BUILD_SCRIPT} failed (exit {result.returncode}):\n{tail}")
    return binaries
