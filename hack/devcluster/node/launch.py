"""What a container runs: from its image when the local image store knows it, else from the host.

`plan` decides, per container run, the command, the environment it starts from, the working
directory, the user and the root file system's lower layer. With an image (`devcluster.node.image`)
they come from the image's config under Kubernetes' rules. Without one the container runs from
the host's environment, the project's installed virtualenv standing in for the image: its
`command` + `args`, or for a Flywheel image without a command the mapped one
(`FLYWHEEL_NODE_IMAGE_COMMANDS`); `runAsNonRoot` without a user runs as 65532.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.node.env import ContainerConfigError
from devcluster.node.image import Image, lookup, run_of
from images.store import pin

Obj = dict[str, Any]
NON_ROOT = 65532
"""The user a host-run container with `runAsNonRoot` and no `runAsUser` runs as."""


@dataclass(frozen=True)
class Launch:
    """How one container run starts."""

    argv: list[str]
    base_env: dict[str, str]
    working_dir: str
    user: tuple[int, int] | None
    image: Image | None
    """The image it runs from; None: from the host's environment."""

    @property
    def lower(self) -> Path | None:
        """The root file system's lower layer (None: the host root)."""
        return None if self.image is None else self.image.rootfs


def plan(
    pod: Obj,
    container: Obj,
    *,
    host_env: Mapping[str, str],
    image_commands: Mapping[str, list[str]],
    find: Callable[[str], Image | None] = lookup,
) -> Launch:
    """The launch of `container` (`host_env`: the node's environment for host-run containers;
    the `KUBERNETES_*` service variables of it go to every container)."""
    hostname = {"HOSTNAME": pod["spec"].get("hostname") or pod["metadata"]["name"]}
    image = find(container.get("image", ""))
    if image is not None:
        run = run_of(image, pod, container)
        service = {k: v for k, v in host_env.items() if k.startswith("KUBERNETES_")}
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", **run.env}
        return Launch(run.argv, {**env, **service, **hostname}, run.working_dir, run.user, image)
    argv = [*container.get("command", []), *container.get("args", [])]
    if not container.get("command"):
        name = container.get("image", "")
        default = next((c for prefix, c in image_commands.items() if name.startswith(prefix)), None)
        if default is None:
            raise ContainerConfigError(
                f"container {container['name']} has no command and image {name!r} is neither "
                "in the local image store (make images-local) nor mapped to a command (see "
                "docs/local-cluster.md)"
            )
        argv = [*default, *container.get("args", [])]
    env = {**host_env, **hostname}
    return Launch(argv, env, container.get("workingDir", ""), host_user(pod, container), None)


def host_user(pod: Obj, container: Obj) -> tuple[int, int] | None:
    """The user of a host-run container (None: root)."""
    ctx = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
    uid = ctx.get("runAsUser")
    if uid is None and ctx.get("runAsNonRoot"):
        uid = NON_ROOT  # the project's images run as 65532; the host has no image metadata
    if uid is None or uid == 0:
        return None
    return int(uid), int(ctx.get("runAsGroup", uid))


def pinned(how: Launch | None, held: int | None) -> int | None:
    """Pin the image `how` runs from (`images.store.pin`), releasing the pin `held` before;
    None without an image."""
    if held is not None:
        os.close(held)
    return None if how is None or how.image is None else pin(how.image)
