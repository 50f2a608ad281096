"""The operator's overhead on a training: TrainingRun created -> ModelVersion registered, minus fit.

Usage (with the local cluster running and the CRDs applied:
`make cluster-up && eval "$(make -s cluster-env)" && kubectl apply --server-side -f crds`):

    .venv/bin/python bench/training_overhead.py [RUNS]

It creates a namespace, starts the operator (`python -m flywheel`) against it, ingests the iris
quick-start Dataset once, then creates RUNS
TrainingRuns of the quick-start example one after the other. Each phase is timed on this side by
polling the API every 50 ms (so each figure carries up to ~50 ms of observation error):

  react     TrainingRun created -> training Job created (the operator's reaction)
  pod       Job created -> training pod running (scheduler + node: image, sandbox, start)
  job       pod running -> Job complete (imports, load, fit, evaluate, export, parity, store)
  register  Job complete -> ModelVersion registered and the run Succeeded (the operator)
  fit       the estimator's own fit time, as measured inside the Job
  outside   job minus the time train() measures itself: interpreter start, imports
            (scikit-learn, skl2onnx, onnxruntime, pandas: ~4.5 s on a 2-core machine), exit,
            and the Job controller marking the Job complete

and overhead = total - fit. There is no peer here to compare with: the figure is what Flywheel
adds around scikit-learn's `fit` on a tiny dataset, i.e. its fixed cost per training.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from flywheel.interfaces.jobs import TrainReport, decode_result

KUBECTL = os.environ.get("KUBECTL", "kubectl")
ROOT = Path(__file__).resolve().parent.parent
PHASES = ("react", "pod", "job", "register", "total", "fit", "outside", "overhead")


def kubectl(namespace: str, *args: str, stdin: str | None = None) -> str:
    """Run kubectl against $KUBECONFIG in the bench namespace."""
    return subprocess.run(
        [KUBECTL, "-n", namespace, *args], input=stdin, capture_output=True, text=True, check=True
    ).stdout


def get(namespace: str, *args: str) -> dict[str, Any]:
    """One object as JSON ({} when absent)."""
    try:
        return dict(json.loads(kubectl(namespace, "get", *args, "-o", "json")))
    except subprocess.CalledProcessError:
        return {}


def wait(probe: Any, what: str, timeout: float = 300) -> float:
    """Poll every 50 ms until probe() is truthy; the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return time.monotonic()
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def one_run(namespace: str, name: str) -> dict[str, float]:
    """Create one TrainingRun and time its phases."""
    manifest = yaml.safe_load((ROOT / "examples/quickstart/02-trainingrun.yaml").read_text())
    manifest["metadata"]["name"] = name
    job = f"{name}-train"
    created = time.monotonic()
    kubectl(namespace, "create", "-f", "-", stdin=json.dumps(manifest))
    job_seen = wait(lambda: get(namespace, "job", job), "the training Job")

    def pod_running() -> bool:
        pods = get(namespace, "pods", "-l", f"job-name={job}").get("items", [])
        return any(
            "running" in s.get("state", {}) or "terminated" in s.get("state", {})
            for p in pods
            for s in p.get("status", {}).get("containerStatuses", [])
        )

    running = wait(pod_running, "the training pod")
    complete = wait(
        lambda: get(namespace, "job", job).get("status", {}).get("succeeded"), "the Job"
    )
    registered = wait(
        lambda: get(namespace, "trainingrun", name).get("status", {}).get("modelVersionRef"),
        "the ModelVersion",
    )
    pods = get(namespace, "pods", "-l", f"job-name={job}")["items"]
    message = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    result = decode_result(message, TrainReport)
    assert isinstance(result, TrainReport), message
    fit = result.fit_seconds
    total = registered - created
    return {
        "react": job_seen - created,
        "pod": running - job_seen,
        "job": complete - running,
        "register": registered - complete,
        "total": total,
        "fit": fit,
        "outside": complete - running - result.seconds,
        "overhead": total - fit,
    }


def main() -> int:
    """Start the operator, ingest iris, time RUNS trainings, print the medians."""
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    namespace = f"bench-train-{int(time.time())}"
    subprocess.run([KUBECTL, "create", "namespace", namespace], check=True, capture_output=True)
    log = Path(tempfile.mkstemp(prefix="flywheel-operator-", suffix=".log")[1])
    env = {
        **os.environ,
        "FLYWHEEL_LIVENESS_PORT": "0",
        "FLYWHEEL_METRICS_PORT": "0",
    }
    with log.open("wb") as out:
        operator = subprocess.Popen(
            [sys.executable, "-m", "flywheel", "--namespace", namespace],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        kubectl(namespace, "apply", "-f", str(ROOT / "examples/quickstart/01-dataset.yaml"))
        kubectl(namespace, "wait", "--for=condition=Ready", "--timeout=300s", "dataset/iris")
        samples = [one_run(namespace, f"iris-bench-{i}") for i in range(runs)]
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=30)
        subprocess.run(
            [KUBECTL, "delete", "namespace", namespace, "--wait=false"], capture_output=True
        )
    print(f"command: .venv/bin/python bench/training_overhead.py {runs}")
    print(f"operator log: {log}; n={runs}, medians (max):")
    for phase in PHASES:
        values = [s[phase] for s in samples]
        print(f"  {phase:9} {statistics.median(values):7.2f} s   ({max(values):.2f} s)")
    total = statistics.median(s["total"] for s in samples)
    overhead = statistics.median(s["overhead"] for s in samples)
    operator_share = statistics.median(s["react"] + s["register"] for s in samples)
    print(f"overhead / total: {overhead / total:.1%} of the time is not the estimator's fit")
    print(f"of which the operator itself (react + register): {operator_share:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
