"""What a container sees of the host: its root and the runtime, never the clusters' state.

A container's root is an overlay whose lower layer is the host root, so on its own it would show
every local cluster's state directory (PKI keys, etcd data, admin kubeconfigs), every pod's
volumes under `<node dir>/volumes` and `<node dir>/pods`, and the users' home directories.
Inside the pod's mount namespace, after the overlay and before the volumeMounts, the node hides:

- behind an empty tmpfs, read-only once the root is set up ("masks"): this node's state
  directory and its cluster's directory, every directory in the host-wide claims registry (the
  other local clusters, `devcluster.claims`) and the registry itself, /root, /home, the user's
  home and the binaries cache (`FLYWHEEL_CACHE`, ~/.cache/flywheel);
- behind a fresh, empty directory of the container's own ("scratch"): /tmp and /var/tmp,
  writable like the rest of the root and read-only with `readOnlyRootFilesystem`, as a kubelet
  gives no writable /tmp to a read-only root either.

The runtime standing in for the image (the project checkout, its virtualenv and the Python
installation behind it) stays visible with the root's semantics, written to the overlay's upper
layer and read-only with the root: where a mask or scratch covers it, its overlay view is bound
aside before the mask and moved back on top; masks below it (`.cluster` inside the checkout)
are then applied over it. Only what would otherwise be visible is mounted (no mask inside a
mask). Volumes are bind-mounted from the host afterwards, so a hostPath into a hidden directory
is still what the pod asked for.
"""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from devcluster.binaries import cache_root
from devcluster.claims import Registry

MASK = "mask"
SCRATCH = "scratch"
RUNTIME = "runtime"
SCRATCH_DIRS = ("/tmp", "/var/tmp")
ALWAYS_MASKED = ("/root", "/home", "/run/flywheel-devcluster")
COVERED = "covered"
"""The setup script's variable listing `|<target>|` for every path a volume was mounted on."""


@dataclass(frozen=True)
class Layer:
    """One host directory as the container sees it: masked, scratch, or the runtime kept."""

    path: str
    kind: str


def hidden_dirs(node_dir: Path, claims_root: Path | None = None) -> list[Path]:
    """The host directories no container may see (before `plan` drops the redundant ones)."""
    paths = [node_dir]
    cluster = node_dir.parent
    if (cluster / "state.json").exists() or (cluster / "pki").is_dir():
        paths.append(cluster)
    registry = Registry(claims_root)
    paths += [Path(claim.directory) for claim in registry.claims()]
    paths += [registry.root, *map(Path, ALWAYS_MASKED), Path.home(), cache_root()]
    return paths


def runtime_dirs(project: Path) -> list[Path]:
    """What the containers run from: the checkout, the virtualenv, the Python behind it."""
    return [
        project,
        Path(sys.prefix),
        Path(sys.exec_prefix),
        Path(sys.base_prefix),
        Path(sys.base_exec_prefix),
        Path(sys.executable).resolve().parents[1],
    ]


def host_view(node_dir: Path, project: Path) -> list[Layer]:
    """The layers to mount over a container's root on this host, now (clusters come and go)."""
    return plan(hidden_dirs(node_dir), SCRATCH_DIRS, runtime_dirs(project))


def plan(
    masks: Iterable[str | Path],
    scratch: Iterable[str | Path],
    runtime: Iterable[str | Path],
    *,
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> list[Layer]:
    """The layers that change what the container sees, shallowest first.

    Paths are resolved on the host (the container's lower layer is the host root, so the same
    symlinks resolve the same way, and no mount target passes through a symlink). A path named
    twice keeps the later kind (the runtime wins: pods must run). A mask or scratch is needed
    only where its parent is visible; a runtime path only where its parent is hidden.
    """
    kinds: dict[str, str] = {}
    for kind, paths in ((MASK, masks), (SCRATCH, scratch), (RUNTIME, runtime)):
        for given in paths:
            path = os.path.realpath(given)
            if path != "/" and is_dir(path):
                kinds[path] = kind
    chosen: list[Layer] = []
    for path in sorted(kinds, key=lambda p: (p.count("/"), p)):
        above = _deepest_above(path, chosen)
        hidden = above is not None and above.kind != RUNTIME
        if (kinds[path] == RUNTIME) == hidden:
            chosen.append(Layer(path, kinds[path]))
    return chosen


def _deepest_above(path: str, layers: list[Layer]) -> Layer | None:
    above = [layer for layer in layers if _under(path, layer.path)]
    return max(above, key=lambda layer: len(layer.path), default=None)


def _under(path: str, parent: str) -> bool:
    return path.startswith(parent.rstrip("/") + "/")


def setup_lines(layers: list[Layer], merged: str, private: str) -> list[str]:
    """Shell lines that mount the layers over `merged` (run before the volumes are mounted).

    `private` is a host directory of the container's own: runtime views are parked there while
    a mask covers their place, and the scratch directories live there.
    """
    q = shlex.quote
    if not layers:
        return [f"{COVERED}=''"]
    indexed = list(enumerate(layers))
    parked = {x.path: f"{private}/runtime-{i}" for i, x in indexed if x.kind == RUNTIME}
    scratch = {x.path: f"{private}/scratch-{i}" for i, x in indexed if x.kind == SCRATCH}
    # Every mask and scratch sits where the overlay shows the host (its parent is visible), so
    # one mkdir makes sure of all mount points at once (a cluster directory may just be gone).
    # Never `rm -rf` here: inside the pod's mount namespace a parked view is the project itself.
    made = [merged + x.path for x in layers if x.kind != RUNTIME]
    lines = [
        "umask 022",
        "mkdir -p " + " ".join(map(q, [*parked.values(), *scratch.values(), *made])),
    ]
    if scratch:
        lines.append("chmod 1777 " + " ".join(map(q, scratch.values())))
    lines += [f"mount --bind {q(merged + path)} {q(park)}" for path, park in parked.items()]
    for layer in layers:
        target = q(merged + layer.path)
        if layer.kind == MASK:
            lines.append(f"mount -t tmpfs -o mode=755,size=1m flywheel-mask {target}")
        elif layer.kind == SCRATCH:
            lines.append(f"mount --bind {q(scratch[layer.path])} {target}")
        else:  # made inside the mask or scratch that covers it
            lines += [f"mkdir -p {target}", f"mount --move {q(parked[layer.path])} {target}"]
    return [f"{COVERED}=''", *lines]


def finish_lines(layers: list[Layer], merged: str, *, read_only: bool) -> list[str]:
    """Shell lines that make the masks (and with a read-only root, the scratch) read-only.

    They run after the volumes are mounted, so that mount points could be made inside masks
    and scratch; a layer that a volume covers exactly is left alone (the remount would hit the
    volume).
    """
    q = shlex.quote
    lines = []
    for layer in layers:
        if layer.kind == MASK or (layer.kind == SCRATCH and read_only):
            pattern = q(f"|{layer.path}|")
            remount = f"mount -o remount,bind,ro {q(merged + layer.path)}"
            lines.append(f'case "${COVERED}" in *{pattern}*) ;; *) {remount} ;; esac')
    return lines


def cover_line(target_variable: str) -> str:
    """The shell line recording that a volume was mounted on `$<target_variable>`."""
    return f'{COVERED}="${COVERED}|${target_variable}|"'


def masks_under(layers: list[Layer], path: str) -> tuple[str, ...]:
    """The outermost masks strictly below `path`: hidden again when a volume over the runtime
    brings a host directory back (`sandbox._shadowed_environment`)."""
    masks = [layer.path for layer in layers if layer.kind == MASK and _under(layer.path, path)]
    return tuple(m for m in masks if not any(_under(m, other) for other in masks))


def hide_lines(merged_target: str, host_path: str, masks: tuple[str, ...]) -> list[str]:
    """Shell lines that cover `masks` (host paths below `host_path`, bound read-only at
    `merged_target`, a shell word) with an empty read-only tmpfs."""
    q = shlex.quote
    return [
        f"mount -t tmpfs -o ro,mode=755,size=4k flywheel-mask {merged_target}"
        + q(mask[len(host_path.rstrip("/")) :])
        for mask in masks
    ]
