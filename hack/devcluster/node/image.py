"""Containers from their images: what a runtime takes from an image, with Kubernetes' rules.

When the local image store (`images.store`, filled by `make images-local`) knows a container's
image, the container runs from it: the image's root file system is the overlay's lower layer, and
its config supplies what the pod spec leaves out. `command` replaces the image's ENTRYPOINT and
then drops its CMD; `args` replaces CMD; the image's ENV comes first and the container's `env`
overrides it; `workingDir` wins over WORKDIR; `runAsUser`/`runAsGroup` win over USER (a number,
or a name looked up in the image's /etc/passwd and /etc/group), and `runAsNonRoot` refuses an
image that would run as root, as the kubelet does. An image the store does not know runs from the
host's environment as before (`devcluster.node.pods`), and the pod's events say so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.node.env import ContainerConfigError
from images.store import Image, lookup

Obj = dict[str, Any]
__all__ = ["Image", "ImageRun", "lookup", "run_of"]


@dataclass(frozen=True)
class ImageRun:
    """How one container runs from its image."""

    image: Image
    argv: list[str]
    env: dict[str, str]
    working_dir: str
    user: tuple[int, int]


def run_of(image: Image, pod: Obj, container: Obj) -> ImageRun:
    """The command, environment, working directory and user of `container` from `image`."""
    command, args = container.get("command"), container.get("args")
    # Empty args count as unset, as containerd has it: the image's CMD then.
    argv = [*command, *(args or [])] if command else [*image.entrypoint, *(args or image.cmd)]
    if not argv:
        raise ContainerConfigError(
            f"container {container['name']}: no command specified (the image {image.ref} has no "
            "ENTRYPOINT or CMD)"
        )
    user = _user(image, pod, container)
    return ImageRun(
        image, argv, dict(image.env), container.get("workingDir") or image.working_dir or "/", user
    )


def _user(image: Image, pod: Obj, container: Obj) -> tuple[int, int]:
    ctx = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
    name, _, group = image.user.partition(":")
    uid = ctx.get("runAsUser")
    if uid is None:
        uid = _resolve(name or "0", image.rootfs / "etc" / "passwd", field=2)
    gid = ctx.get("runAsGroup")
    if gid is None:
        gid = _resolve(group, image.rootfs / "etc" / "group", field=2) if group else None
    if gid is None:
        gid = _primary_group(image.rootfs / "etc" / "passwd", int(uid))
    if ctx.get("runAsNonRoot") and int(uid) == 0:
        raise ContainerConfigError(
            f"container has runAsNonRoot and image {image.ref} will run as root "
            f"(USER {image.user or 'unset'})"
        )
    return int(uid), int(gid)


def _resolve(value: str, table: Path, *, field: int) -> int:
    """A numeric id, or the id of a name in an /etc/passwd- or /etc/group-style file."""
    if value.isdigit():
        return int(value)
    for line in _lines(table):
        parts = line.split(":")
        if parts[0] == value and len(parts) > field and parts[field].isdigit():
            return int(parts[field])
    raise ContainerConfigError(
        f"unable to find user or group {value!r} in the image's {table.name}"
    )


def _primary_group(passwd: Path, uid: int) -> int:
    for line in _lines(passwd):
        parts = line.split(":")
        if len(parts) > 3 and parts[2] == str(uid) and parts[3].isdigit():
            return int(parts[3])
    return uid


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except OSError:
        return []
