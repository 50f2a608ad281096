"""The base image: Debian bookworm's Python from Debian's packages, standing in for the
`python:3.11.11-slim-bookworm` the Dockerfiles name (passed as their PYTHON_IMAGE argument).

`mmdebstrap --variant=minbase` makes the root file system (python3, python3-venv, python3-pip,
python-is-python3, ca-certificates; the merged-usr hook, so usrmerge and perl are not pulled
in); Debian's `EXTERNALLY-MANAGED` marker is removed so pip behaves as in the official image.
buildah imports the tarball as a local image whose tag carries the recipe's digest: a changed
recipe is a new base, and with it new images. Differences from the official image: Python
3.11.2 in /usr/bin (not 3.11.11 in /usr/local/bin); `python` and `pip` come from Debian.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

from images.buildah import Buildah, BuildFailed

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
SOURCES = (
    f"deb http://deb.debian.org/debian {SUITE} main",
    f"deb http://deb.debian.org/debian {SUITE}-updates main",
    f"deb http://deb.debian.org/debian-security {SUITE}-security main",
)
CONFIG = (
    "--env",
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "--env",
    "LANG=C.UTF-8",
    "--cmd",
    '["python3"]',
)
NAME = "localhost/flywheel/python"


def mmdebstrap_argv(tarball: Path) -> list[str]:
    """The mmdebstrap command writing the root file system to `tarball`."""
    return [
        "mmdebstrap",
        "--variant=minbase",
        "--mode=root",
        "--format=tar",
        "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
        f"--include={','.join(PACKAGES)}",
        '--aptopt=APT::Install-Recommends "false"',
        '--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED',
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/*',
        SUITE,
        str(tarball),
        *SOURCES,
    ]


def recipe_digest() -> str:
    """The sha256 of the recipe (packages, sources, hooks, image config)."""
    recipe = {"mmdebstrap": mmdebstrap_argv(Path("rootfs.tar")), "config": CONFIG}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def base_ref() -> str:
    """The base image's local reference, e.g. localhost/flywheel/python:3.11-bookworm-1a2b.."""
    return f"{NAME}:3.11-{SUITE}-{recipe_digest()[:12]}"


def build_base(buildah: Buildah, log: Path) -> str:
    """Make the base image (mmdebstrap, then import); its reference. BuildFailed with the
    output's tail when either step fails."""
    ref = base_ref()
    log.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=buildah.root, prefix="base-") as work:
        tarball = Path(work) / "rootfs.tar"
        with log.open("w") as out:
            done = subprocess.run(
                mmdebstrap_argv(tarball), stdout=out, stderr=subprocess.STDOUT, check=False
            )
        if done.returncode != 0:
            tail = "\n".join(log.read_text().splitlines()[-60:])
            raise BuildFailed(f"mmdebstrap failed (exit {done.returncode}); see {log}:\n{tail}")
        container = buildah.run("from", "scratch").strip()
        try:
            buildah.run("add", container, str(tarball), "/")
            buildah.run("config", *CONFIG, container)
            buildah.run("commit", container, ref)
        finally:
            buildah.run("rm", container)
    return ref
