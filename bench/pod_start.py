"""Pod start latency on the local node: pod created -> bound -> container running.

Usage (with a running local cluster):  PYTHONPATH=hack .venv/bin/python bench/pod_start.py [N]
Polls the API every 20 ms, so figures carry up to ~20 ms of observation error.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

KUBECTL = os.environ.get("KUBECTL", "kubectl")


def kubectl(*args: str, stdin: str | None = None) -> str:
    """Run kubectl against $KUBECONFIG."""
    return subprocess.run(
        [KUBECTL, *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def one(name: str) -> tuple[float, float]:
    """Seconds from create to bound, and from bound to the container running."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 0,
            "containers": [
                {
                    "name": "main",
                    "image": "python:3.11",
                    "command": ["python", "-c", "import time; time.sleep(600)"],
                }
            ],
        },
    }
    created = time.monotonic()
    kubectl("create", "-f", "-", stdin=json.dumps(pod))
    bound = running = None
    while running is None:
        status = json.loads(kubectl("get", "pod", name, "-o", "json"))
        now = time.monotonic()
        if bound is None and status["spec"].get("nodeName"):
            bound = now
        states = status.get("status", {}).get("containerStatuses", [])
        if states and "running" in states[0]["state"]:
            running = now
        time.sleep(0.02)
    kubectl("delete", "pod", name, "--wait=false")
    assert bound is not None
    return bound - created, running - bound


def main() -> int:
    """Create N pods one after the other and print the latencies."""
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    samples = [one(f"latency-{i}-{int(time.time())}") for i in range(count)]
    to_bound = [s[0] for s in samples]
    to_running = [s[1] for s in samples]
    for label, values in (("create -> bound", to_bound), ("bound -> running", to_running)):
        print(
            f"{label:18} p50 {statistics.median(values) * 1000:6.0f} ms   "
            f"max {max(values) * 1000:6.0f} ms   (n={count})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
