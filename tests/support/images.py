"""Run a command from an image's unpacked root file system, roughly as a container would: a
throwaway mount namespace and PID namespace, the root file system bind-mounted read-only with
`/proc`, a tmpfs `/tmp` and a small `/dev` (null, zero, random, urandom, shm), `chroot` as the
image's user with only the image's environment and its working directory. Needs root. A quick
check of image contents for tests; the local node runs pods its own way.
"""

from __future__ import annotations

import subprocess

from images.store import Image

_SCRIPT = """set -e
root="$1"; user="$2"; workdir="$3"; shift 3
mount --make-rprivate /
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs tmpfs "$root/tmp"
mount -t tmpfs -o mode=755 tmpfs "$root/dev"
for device in null zero random urandom; do
    touch "$root/dev/$device"
    mount --bind "/dev/$device" "$root/dev/$device"
done
mkdir -m 1777 "$root/dev/shm"
exec chroot --userspec="$user" "$root" /usr/bin/env -i -C "$workdir" "$@"
"""


def run_in_image(
    image: Image, argv: list[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`argv` inside `image` (its PATH finds the command); output captured as text."""
    user = image.user or "0:0"
    if ":" not in user:
        user = f"{user}:{user}"
    env = [f"{key}={value}" for key, value in image.env.items()]
    return subprocess.run(
        [
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "sh",
            "-c",
            _SCRIPT,
            "sh",
            str(image.rootfs),
            user,
            image.working_dir,
            *env,
            *argv,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
