"""buildah, confined to the image cache: build a Dockerfile, import a root file system, and
unpack an image into a plain directory.

Every call uses a storage.conf of our own (overlay driver, graph root and run root under
`<images root>/containers`), so nothing lands in /var/lib/containers and `rm -rf` of the cache
forgets everything. Build steps run with `--isolation chroot` (no container runtime) and
`--pull=never` (only the local base image). Downloads inside a build trust the host's CA store
through read-only mounts that exist for the build only (`-v`; the build stage's files never
reach the final image): the CA bundle, and a uv config asking for the system certificates.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# "[1/2] STEP 6/10: RUN ..." (the stage prefix only in multi-stage builds)
STEP = re.compile(r"^(?:\[(\d+)/(\d+)\] )?STEP (\d+)/(\d+): (.*)$")
TAIL_LINES = 60


class BuildFailed(RuntimeError):
    """A buildah command failed; the message ends with its output (the failing step's)."""


@dataclass
class Step:
    """One Dockerfile instruction as buildah ran it."""

    stage: str
    number: int
    total: int
    text: str
    seconds: float = 0.0
    cached: bool = False


def _tail(text: str) -> str:
    return "\n".join(text.rstrip().splitlines()[-TAIL_LINES:])


class Buildah:
    """The buildah CLI on the cache's own storage."""

    def __init__(self, root: Path) -> None:
        self.root = root / "containers"
        self.conf = self.root / "storage.conf"
        self.uv_conf = self.root / "uv.toml"

    def prepare(self) -> None:
        """Write the storage and uv configs (idempotent)."""
        (self.root / "storage").mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "[storage]\n"
            'driver = "overlay"\n'
            f'graphroot = "{self.root / "storage"}"\n'
            f'runroot = "{self.root / "run"}"\n'
        )
        self.uv_conf.write_text("system-certs = true\n")

    @property
    def env(self) -> dict[str, str]:
        """The environment of every buildah call: our storage.conf."""
        return {**os.environ, "CONTAINERS_STORAGE_CONF": str(self.conf)}

    def run(self, *args: str) -> str:
        """Run `buildah args...`; its stdout, or BuildFailed with its output."""
        done = subprocess.run(
            ["buildah", *args], env=self.env, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BuildFailed(
                f"buildah {' '.join(args[:2])} failed (exit {done.returncode}):\n"
                f"{_tail(done.stdout + done.stderr)}"
            )
        return done.stdout

    def exists(self, ref: str) -> bool:
        """Whether the storage holds an image named `ref`."""
        done = subprocess.run(
            ["buildah", "inspect", "--type", "image", ref], env=self.env, capture_output=True
        )
        return done.returncode == 0

    def build_volumes(self) -> list[str]:
        """The build-time-only mounts: the host's CA bundle and the uv config."""
        volumes = [f"{self.uv_conf}:/etc/uv/uv.toml:ro"]
        if CA_BUNDLE.exists():
            volumes.append(f"{CA_BUNDLE}:{CA_BUNDLE}:ro")
        return volumes

    def bud(
        self,
        dockerfile: Path,
        context: Path,
        ref: str,
        build_args: dict[str, str],
        log: Path,
        on_step: Callable[[Step], None],
    ) -> list[Step]:
        """Build `dockerfile` as `ref`; every finished step goes to `on_step`. The full output
        goes to `log`; a failure raises BuildFailed ending with the output's tail."""
        argv = ["buildah", "bud", "--isolation", "chroot", "--layers", "--force-rm"]
        argv += ["--pull=never", "-f", str(dockerfile), "-t", ref]
        for key, value in sorted(build_args.items()):
            argv += ["--build-arg", f"{key}={value}"]
        for volume in self.build_volumes():
            argv += ["-v", volume]
        argv.append(str(context))
        steps: list[Step] = []
        started = time.monotonic()

        def finish() -> None:
            if steps and not steps[-1].seconds:
                steps[-1].seconds = time.monotonic() - started
                on_step(steps[-1])

        log.parent.mkdir(parents=True, exist_ok=True)
        with (
            log.open("w") as out,
            subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ) as process,
        ):
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                match = STEP.match(line.rstrip("\n"))
                if match:
                    finish()
                    started = time.monotonic()
                    stage, stages, number, total, text = match.groups()
                    where = f"{stage}/{stages}" if stage else ""
                    steps.append(Step(where, int(number), int(total), text))
                elif steps and line.startswith("--> Using cache"):
                    steps[-1].cached = True
            code = process.wait()
        if code != 0:
            raise BuildFailed(
                f"buildah bud -f {dockerfile} failed (exit {code}); the build's output "
                f"(all of it in {log}):\n{_tail(log.read_text())}"
            )
        finish()
        return steps

    def inspect(self, ref: str) -> dict[str, Any]:
        """`buildah inspect` of an image: `OCIv1` is its OCI image config (architecture, os,
        config, rootfs, history), `FromImageID` its ID in the storage."""
        found: dict[str, Any] = json.loads(self.run("inspect", "--type", "image", ref))
        return found

    def unpack(self, ref: str, rootfs: Path) -> None:
        """Copy the image's file system into `rootfs` (a new directory): a working container's
        mount, copied with owners, modes, links and extended attributes, then removed."""
        container = self.run("from", "--pull=never", ref).strip()
        try:
            mount = self.run("mount", container).strip()
            rootfs.mkdir(parents=True)
            done = subprocess.run(
                ["cp", "-a", f"{mount}/.", str(rootfs)], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise BuildFailed(f"copying {ref} out of {mount} failed: {_tail(done.stderr)}")
        finally:
            self.run("rm", container)

    def remove(self, ref: str) -> None:
        """Remove an image name (its layers stay while another name or the cache uses them)."""
        if self.exists(ref):
            self.run("rmi", ref)
