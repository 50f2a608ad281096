"""Build (or reuse) the images: `ensure_images()` is what `make images-local` and the tests call.

For each recipe the content digest (images.digest over the Dockerfile and what it copies, salted
with the base's recipe, the build arguments and this builder's format) is compared with the one
the store records: equal is a cache hit and nothing runs, not even buildah. A digest whose
directory is still kept (another checkout built the reference since) is published again, also
without a build. Otherwise the base image is made when the storage lacks it, the Dockerfile is
built with buildah (whose layer cache keeps a source-only change from reinstalling the
dependencies), and the image is unpacked into `<root>/<digest>/` and published in the store's
index. Every step prints one progress line with its duration. One build at a time per cache:
an flock on `<root>/lock`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from images import base, tools
from images.buildah import Buildah, Step
from images.digest import tree_digest
from images.recipes import Recipe, default_recipes
from images.store import Image, images_root, load, lookup, prune, publish

# Bump when the build or the unpacking changes what ends up in the store.
FORMAT = "flywheel-images/1"

Progress = Callable[[str], None]


def stderr_progress(line: str) -> None:
    """The default progress: `images: <line>` on stderr."""
    print(f"images: {line}", file=sys.stderr, flush=True)


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def image_digest(recipe: Recipe) -> str:
    """The content digest of one recipe's image (what the store keys it by)."""
    salt = [
        FORMAT,
        base.recipe_digest(),
        *(f"{k}={v}" for k, v in sorted(recipe.build_args.items())),
    ]
    return tree_digest(recipe.context, recipe.dockerfile, salt)


def _size(rootfs: Path) -> int:
    """Bytes of the regular files under rootfs, hard links counted once (as `du -sb`)."""
    seen: set[int] = set()
    total = 0
    for folder, _, files in os.walk(rootfs):
        for name in files:
            stat = os.lstat(os.path.join(folder, name))
            if stat.st_ino not in seen:
                seen.add(stat.st_ino)
                total += stat.st_size
    return total


def _step_line(name: str, step: Step) -> str:
    text = " ".join(step.text.split())
    text = text if len(text) <= 72 else text[:69] + "..."
    cached = " (cached)" if step.cached else ""
    stage = f" stage {step.stage}" if step.stage else ""
    where = f"{name}{stage} step {step.number}/{step.total}"
    return f"  {where} {text}: {step.seconds:.1f} s{cached}"


def ensure_base(buildah: Buildah, root: Path, progress: Progress) -> str:
    """The base image's reference, built first when the storage lacks it."""
    ref = base.base_ref()
    if buildah.exists(ref):
        progress(f"base: {ref} present")
        return ref
    progress(f"base: building {ref} (mmdebstrap {base.SUITE} + buildah import)")
    started = time.monotonic()
    base.build_base(buildah, root / "logs" / "base.log")
    progress(f"base: built in {time.monotonic() - started:.1f} s")
    return ref


def build(
    recipe: Recipe, buildah: Buildah, base_ref: str, root: Path, progress: Progress
) -> list[Step]:
    """Build one Dockerfile into the storage (no unpacking); its steps. BuildFailed on error."""
    progress(f"{recipe.name}: building {recipe.ref} from {recipe.dockerfile}")
    started = time.monotonic()
    steps = buildah.bud(
        recipe.dockerfile,
        recipe.context,
        recipe.ref,
        {"PYTHON_IMAGE": base_ref, **recipe.build_args},
        root / "logs" / f"{recipe.name}.log",
        lambda step: progress(_step_line(recipe.name, step)),
    )
    progress(f"{recipe.name}: built in {time.monotonic() - started:.1f} s")
    return steps


def unpack(recipe: Recipe, digest: str, buildah: Buildah, root: Path, progress: Progress) -> Image:
    """Unpack a built image into `<root>/<digest>` and publish it under its reference."""
    started = time.monotonic()
    partial = root / f".{digest}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    buildah.unpack(recipe.ref, partial / "rootfs")
    inspected = buildah.inspect(recipe.ref)
    (partial / "config.json").write_text(json.dumps(inspected["OCIv1"], indent=2) + "\n")
    meta = {
        "ref": recipe.ref,
        "digest": digest,
        "image_id": inspected["FromImageID"],
        "size_bytes": _size(partial / "rootfs"),
        "dockerfile": str(recipe.dockerfile),
    }
    (partial / "image.json").write_text(json.dumps(meta, indent=2) + "\n")
    final = root / digest
    if final.exists():  # a forced rebuild of the same content
        shutil.rmtree(final)
    partial.rename(final)
    publish(root, recipe.ref, digest)
    image = lookup(recipe.ref, root)
    assert image is not None, f"{final} was just published"
    progress(
        f"{recipe.name}: unpacked {image.size_bytes / 1e6:.0f} MB into {final} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return image


def ensure_images(
    recipes: Sequence[Recipe] | None = None,
    *,
    root: Path | None = None,
    install_tools: bool = False,
    force: bool = False,
    progress: Progress = stderr_progress,
) -> dict[str, Image]:
    """Every recipe's image, by reference: reused when its content digest is unchanged, built
    and unpacked otherwise. ToolsMissing without mmdebstrap or buildah (installed first when
    `install_tools`); BuildFailed, with the build's own output, when a build fails."""
    root = root or images_root()
    recipes = default_recipes() if recipes is None else recipes
    started = time.monotonic()
    result: dict[str, Image] = {}
    with _locked(root):
        todo: list[tuple[Recipe, str]] = []
        for recipe in recipes:
            digest = image_digest(recipe)
            image = lookup(recipe.ref, root)
            if image is not None and image.digest == digest and not force:
                progress(f"{recipe.name}: {recipe.ref} up to date (digest {digest[:12]})")
                result[recipe.ref] = image
                continue
            # Unpacked earlier and still kept (another checkout built the reference since).
            earlier = None if force else load(root / digest, recipe.ref)
            if earlier is not None:
                publish(root, recipe.ref, digest)
                progress(f"{recipe.name}: {recipe.ref} unpacked earlier (digest {digest[:12]})")
                result[recipe.ref] = earlier
            else:
                todo.append((recipe, digest))
        if not todo:
            return result
        tools.ensure(install_tools)
        buildah = Buildah(root)
        buildah.prepare()
        base_ref = ensure_base(buildah, root, progress)
        for recipe, digest in todo:
            build(recipe, buildah, base_ref, root, progress)
            result[recipe.ref] = unpack(recipe, digest, buildah, root, progress)
        for path in prune(root):
            progress(f"removed the superseded {path}")
    progress(f"done in {time.monotonic() - started:.1f} s")
    return result
