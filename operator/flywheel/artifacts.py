"""The artifact store: datasets, statistics and models addressed by `pvc://<claim>/<path>` URIs.

Jobs and serving pods mount the artifacts claim at a fixed path (`MOUNT_ROOT/<claim>`), so a URI
maps to a file there. Writes are atomic (write to a temporary name, then rename) and a published
directory is never rewritten: :meth:`ArtifactStore.publish` leaves an existing one untouched.
The interface is small on purpose, so an object store can be added without touching controllers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from flywheel.interfaces.jobs import MOUNT_ROOT


class ArtifactError(Exception):
    """A URI that the store cannot serve."""


@dataclass(frozen=True)
class ArtifactStore:
    """A claim mounted at `root / claim`."""

    root: Path = MOUNT_ROOT

    def path(self, uri: str) -> Path:
        """The local path of a `pvc://<claim>/<path>` URI."""
        scheme, _, rest = uri.partition("://")
        claim, _, relative = rest.partition("/")
        if scheme != "pvc" or not claim or not relative:
            raise ArtifactError(f"not an artifact URI: {uri!r} (expected pvc://<claim>/<path>)")
        path = (self.root / claim / relative).resolve()
        if not path.is_relative_to((self.root / claim).resolve()):
            raise ArtifactError(f"{uri!r} escapes its claim")
        return path

    def read_bytes(self, uri: str) -> bytes:
        """A stored file's content."""
        return self.path(uri).read_bytes()

    def exists(self, uri: str) -> bool:
        """Whether something is stored at the URI."""
        return self.path(uri).exists()

    def publish(self, uri: str, files: dict[str, bytes]) -> bool:
        """Store a directory of files at once; False (and nothing written) if it exists."""
        if self.exists(uri):
            return False
        parent, _, _ = uri.rpartition("/")
        staging = self.stage(parent)
        for name, content in files.items():
            (staging / name).write_bytes(content)
        return self.publish_directory(staging, uri, tuple(files))

    def sweep_staging(self, parent_uri: str) -> int:
        """Remove the staging directories under `parent_uri` (left by a writer that was killed:
        call only when no other writer can be at work there); how many."""
        parent = self.path(parent_uri)
        stale = list(parent.glob(".staging-*")) if parent.is_dir() else []
        for directory in stale:
            shutil.rmtree(directory, ignore_errors=True)
        return len(stale)

    def stage(self, parent_uri: str) -> Path:
        """A new private directory under `parent_uri`, on the same file system as what is
        published there, to write into before :meth:`publish_directory`."""
        parent = self.path(parent_uri)
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=".staging-", dir=parent))

    def publish_directory(self, staging: Path, uri: str, keep: tuple[str, ...]) -> bool:
        """Publish the files `keep` of a staged directory at `uri` at once (a rename), read-only;
        False (and nothing changed) if `uri` exists. The staging directory is removed either way."""
        target = self.path(uri)
        try:
            if target.exists():
                return False
            for entry in staging.iterdir():
                if entry.name not in keep:
                    entry.unlink()
            for name in keep:
                os.chmod(staging / name, 0o444)
            staging.chmod(0o755)
            try:
                staging.rename(target)
            except OSError:
                if target.exists():  # another writer won the race with the same content
                    return False
                raise
            return True
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)


def pvc_uri(claim: str, *parts: str) -> str:
    """`pvc://<claim>/<part>/<part>...`."""
    return "pvc://" + "/".join([claim, *parts])
