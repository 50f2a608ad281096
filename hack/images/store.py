"""The local image store: for an image reference, its unpacked root file system and OCI config.

`images.build` writes it (`make images-local`); the local node reads it with `lookup(ref)` to run
a container from its image. Standard library only, so the node agent can import it cheaply.
Layout under `images_root()` (`~/.cache/flywheel/images`, or `$FLYWHEEL_CACHE/images`):

    index.json          {"<ref>": {"digest": "<content digest>", "previous": "<digest>" | null}}
    <digest>/rootfs/    the image's file system, unpacked (owned by root, as in the image)
    <digest>/config.json    its OCI image config (`config.Entrypoint`, `Cmd`, `Env`, ...)
    <digest>/image.json     ref, digest, image id, size and build seconds
    containers/, logs/      buildah's storage and the build logs (images.buildah)

A digest directory is complete before the index names it (written aside, then renamed), so a
reader never sees half an image.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INDEX = "index.json"
DIGEST_DIR = re.compile(r"^[0-9a-f]{64}$")


def images_root() -> Path:
    """Where images live: beside the cluster binaries (devcluster.binaries.cache_root)."""
    return Path(os.environ.get("FLYWHEEL_CACHE", Path.home() / ".cache" / "flywheel")) / "images"


@dataclass(frozen=True)
class Image:
    """One unpacked image: what a runtime needs to start a container from it."""

    ref: str
    digest: str
    rootfs: Path
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"
    user: str = ""
    size_bytes: int = 0

    @property
    def directory(self) -> Path:
        """The digest directory holding rootfs/, config.json and image.json."""
        return self.rootfs.parent


def _read_index(root: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((root / INDEX).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load(directory: Path, ref: str) -> Image | None:
    """The image unpacked in one digest directory, None when it is incomplete."""
    try:
        config = json.loads((directory / "config.json").read_text()).get("config") or {}
        meta = json.loads((directory / "image.json").read_text())
    except (OSError, ValueError):
        return None
    if not (directory / "rootfs").is_dir():
        return None
    env = dict(item.partition("=")[::2] for item in config.get("Env") or [])
    return Image(
        ref=ref,
        digest=directory.name,
        rootfs=directory / "rootfs",
        entrypoint=tuple(config.get("Entrypoint") or ()),
        cmd=tuple(config.get("Cmd") or ()),
        env=env,
        working_dir=config.get("WorkingDir") or "/",
        user=config.get("User") or "",
        size_bytes=int(meta.get("size_bytes", 0)),
    )


def lookup(ref: str, root: Path | None = None) -> Image | None:
    """The image recorded for `ref` (exactly as a pod spec names it), None when unknown here."""
    root = root or images_root()
    entry = _read_index(root).get(ref)
    if not entry:
        return None
    return load(root / str(entry.get("digest", "")), ref)


def known(root: Path | None = None) -> dict[str, Image]:
    """Every complete image in the index, by reference."""
    root = root or images_root()
    found = {ref: lookup(ref, root) for ref in _read_index(root)}
    return {ref: image for ref, image in found.items() if image is not None}


def publish(root: Path, ref: str, digest: str) -> None:
    """Record `<root>/<digest>` as the image of `ref` (the caller holds the build lock)."""
    index = _read_index(root)
    before = index.get(ref, {}).get("digest")
    index[ref] = {"digest": digest, "previous": before if before != digest else None}
    partial = root / f".{INDEX}.partial"
    partial.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    partial.replace(root / INDEX)


IN_USE = "in-use.lock"
"""In a digest directory: a local node holds a shared lock on it while a container runs from it."""


def pin(image: Image) -> int:
    """Keep `image` from being pruned while the returned descriptor is open (a shared lock;
    closing the descriptor, or the holder's exit, releases it)."""
    fd = os.open(image.directory / IN_USE, os.O_RDONLY | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def in_use(directory: Path) -> bool:
    """Whether a container runs from the image in `directory` now."""
    try:
        fd = os.open(directory / IN_USE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def prune(root: Path) -> list[Path]:
    """Remove digest directories the index names neither as current nor as previous (one
    generation is kept: a pod started from it may still run) unless a container runs from them
    (`pin`; another checkout may have built the same reference meanwhile), and unpacking
    leftovers of an interrupted build (the caller holds the build lock). The removed
    directories."""
    keep = {
        str(entry.get(key))
        for entry in _read_index(root).values()
        for key in ("digest", "previous")
    }
    removed = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        stale = DIGEST_DIR.match(path.name) and path.name not in keep and not in_use(path)
        if stale or (path.name.endswith(".partial") and path.is_dir()):
            shutil.rmtree(path)
            removed.append(path)
    return removed
