"""The images without Docker: their sizes beside MLServer's, and pod start-up from an image.

Usage (with a running local cluster and the images built: `make images-local cluster-up`):
    eval "$(make -s cluster-env)"
    PYTHONPATH=hack .venv/bin/python bench/image_sizes_and_start.py [N]

Sizes: the unpacked root file systems in the local image store, beside the sizes MLServer's
published images are reported at (reference figures from public threads, not measured here).
Start-up: N pods, one after another, that import onnxruntime and numpy and exit, from the
serving image and from the host's environment (an image the store does not know); create ->
Succeeded, polled every 20 ms. Cold runs drop the page cache first (as root), so the image's
files are read from disk as on a node that just pulled it; warm runs do not.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from images.recipes import OPERATOR_REF, SERVING_REF
from images.store import lookup

KUBECTL = os.environ.get("KUBECTL", "kubectl")
WORK = "import onnxruntime, numpy"
MLSERVER = (
    ("seldonio/mlserver:1.3.5 (every runtime)", 3.74e9, "validatedpatterns/industrial-edge#343"),
    ("seldonio/mlserver:1.3.5-sklearn", 0.93e9, "validatedpatterns/industrial-edge#343"),
    ("seldonio/mlserver:1.3.5-slim (compressed)", 0.9e9, "opendatahub-io/ai-edge#95"),
)


def kubectl(*args: str, stdin: str | None = None) -> str:
    """Run kubectl against $KUBECONFIG."""
    return subprocess.run(
        [KUBECTL, *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def sizes() -> None:
    """Our images' unpacked sizes beside MLServer's published ones, as ratios."""
    ours = {ref: lookup(ref) for ref in (OPERATOR_REF, SERVING_REF)}
    missing = [ref for ref, image in ours.items() if image is None]
    if missing:
        raise SystemExit(f"not built: {', '.join(missing)} (make images-local)")
    serving = ours[SERVING_REF]
    assert serving is not None
    print("image sizes (unpacked)")
    for ref, image in ours.items():
        assert image is not None
        print(f"  {ref:52} {image.size_bytes / 1e6:7.0f} MB")
    for name, size, source in MLSERVER:
        ratio = size / serving.size_bytes
        print(f"  {name:52} {size / 1e6:7.0f} MB  = {ratio:4.1f}x ours (reported in {source})")


def start(name: str, image: str, *, cold: bool) -> float:
    """Seconds from create to Succeeded for one pod doing WORK."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "containers": [{"name": "main", "image": image, "command": ["python", "-c", WORK]}],
        },
    }
    if cold:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    created = time.monotonic()
    kubectl("create", "-f", "-", stdin=json.dumps(pod))
    while True:
        phase = json.loads(kubectl("get", "pod", name, "-o", "json"))["status"].get("phase")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(0.02)
    took = time.monotonic() - created
    kubectl("delete", "pod", name, "--wait=false")
    if phase != "Succeeded":
        raise SystemExit(f"pod {name} from {image} failed")
    return took


def main() -> int:
    """Print the sizes, then the start-up figures side by side."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    sizes()
    print(f"\npod start, create -> Succeeded for `{WORK}` (n={count} each, one after another)")
    stamp = int(time.time())
    sides = (("image", "from the serving image", SERVING_REF), ("host", "from the host", "py:3"))
    for cold in (True, False):
        kind = "cold" if cold else "warm"
        medians = {}
        for key, label, image in sides:
            runs = [start(f"{key}-{kind}-{i}-{stamp}", image, cold=cold) for i in range(count)]
            medians[key] = statistics.median(runs)
            print(f"  {kind} {label:24} p50 {medians[key]:5.2f} s   max {max(runs):5.2f} s")
        print(f"  {kind} image / host: {medians['image'] / medians['host']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
