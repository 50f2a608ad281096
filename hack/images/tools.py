"""The system tools the image build needs, installed from Debian's packages when missing.

`make images-local` (and `.ci/run` through it) installs them; the tests only check and fail
with the command to run. Installing needs root (`apt-get`); it is a no-op when every tool is
on PATH. No container runtime is needed: buildah runs build steps with `--isolation chroot`.
"""

from __future__ import annotations

import os
import shutil
import subprocess

# tool -> the Debian package providing it
PACKAGES = {"mmdebstrap": "mmdebstrap", "buildah": "buildah"}


class ToolsMissing(RuntimeError):
    """A build tool is missing and could not (or may not) be installed."""


def missing() -> list[str]:
    """The tools not on PATH."""
    return [tool for tool in PACKAGES if shutil.which(tool) is None]


def install_command(tools: list[str]) -> list[str]:
    """The apt-get command that installs these tools."""
    packages = sorted({PACKAGES[tool] for tool in tools})
    return ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]


def ensure(install: bool) -> None:
    """Every tool present, installed first when `install` (needs root); else ToolsMissing."""
    gone = missing()
    if not gone:
        return
    command = install_command(gone)
    if not install:
        raise ToolsMissing(
            f"{', '.join(gone)} not installed: run `make images-local` (as root), which installs "
            f"them with `{' '.join(command)}`"
        )
    if os.geteuid() != 0:
        raise ToolsMissing(f"{', '.join(gone)} not installed; as root: {' '.join(command)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        # Package lists may be stale or absent on a fresh machine.
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
        done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0 or missing():
        raise ToolsMissing(f"`{' '.join(command)}` failed:\n{done.stdout[-2000:]}{done.stderr}")
