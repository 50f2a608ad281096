"""Content digests of what goes into an image, so an unchanged tree is not built again.

The inputs are read from the Dockerfile itself: its text, and every build-context path its
`COPY`/`ADD` instructions read (not `--from=` stages), minus what `.dockerignore` leaves out
(`__pycache__` and the like). A salt carries the rest (the base image's recipe, build
arguments, the builder's format version). The ignore rules are matched approximately (a
pattern against the relative path, its leading parts, or with `**/` any part): a file matched
by mistake costs a rebuild, never a stale image.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shlex
from collections.abc import Iterable, Iterator
from pathlib import Path


def instructions(text: str) -> Iterator[str]:
    """A Dockerfile's instructions, continuation lines joined, comments and blanks dropped."""
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield pending + stripped
        pending = ""
    if pending.strip():
        yield pending.strip()


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths (or globs) read by the Dockerfile's COPY and ADD instructions."""
    sources: list[str] = []
    for instruction in instructions(dockerfile.read_text()):
        keyword, _, rest = instruction.partition(" ")
        if keyword.upper() not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        if any(flag.startswith("--from") for flag in flags):
            continue
        args = [w for w in words if not w.startswith("--")]
        if args and args[0].startswith("["):
            args = json.loads(" ".join(args))
        sources.extend(args[:-1])
    return sources


def ignore_patterns(context: Path) -> list[str]:
    """The patterns of `<context>/.dockerignore` ([] without one)."""
    path = context / ".dockerignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def ignored(relative: str, patterns: Iterable[str]) -> bool:
    """Whether `.dockerignore` leaves this context-relative path out (approximately)."""
    parts = relative.split("/")
    for pattern in patterns:
        if pattern.startswith("**/"):
            if any(fnmatch.fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif any(fnmatch.fnmatch("/".join(parts[:n]), pattern) for n in range(1, len(parts) + 1)):
            return True
    return False


def context_files(context: Path, sources: Iterable[str]) -> list[str]:
    """Every context-relative file the sources name (directories walked), sorted; a source that
    does not exist is kept as itself (the build then fails with its own error)."""
    patterns = ignore_patterns(context)
    found: set[str] = set()
    for source in sources:
        matches = sorted(context.glob(source)) if any(c in source for c in "*?[") else []
        for path in matches or [context / source]:
            if path.is_dir() and not path.is_symlink():
                for folder, dirs, files in os.walk(path):
                    dirs.sort()
                    for name in files:
                        found.add(str((Path(folder) / name).relative_to(context)))
            else:
                found.add(str(path.relative_to(context)))
    return sorted(f for f in found if not ignored(f, patterns))


def _file_digest(path: Path) -> str:
    if path.is_symlink():
        return "symlink:" + os.readlink(path)
    if not path.exists():
        return "missing"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    executable = "x" if os.access(path, os.X_OK) else "-"
    return f"{executable}:{digest.hexdigest()}"


def tree_digest(context: Path, dockerfile: Path, salt: Iterable[str]) -> str:
    """The sha256 of everything a build of `dockerfile` in `context` reads, and the salt."""
    digest = hashlib.sha256()
    for part in salt:
        digest.update(f"salt\0{part}\0".encode())
    digest.update(b"dockerfile\0" + dockerfile.read_bytes() + b"\0")
    ignore = context / ".dockerignore"
    digest.update(b"dockerignore\0" + (ignore.read_bytes() if ignore.exists() else b"") + b"\0")
    for relative in context_files(context, copy_sources(dockerfile)):
        digest.update(f"file\0{relative}\0{_file_digest(context / relative)}\0".encode())
    return digest.hexdigest()
