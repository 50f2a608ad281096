"""The operator under load: 500 Datasets and 500 TrainingRuns created at once.

On a local cluster of its own (started here, stopped at the end): one Dataset is made Ready,
then the local node is stopped so that pods stay Pending and only the operator (and the API
server) is measured. 500 Datasets and 500 TrainingRuns on the Ready one are created with 16
concurrent requests; a watch on Jobs records when each owner's Job appears. Reported: the time
until every Job exists, apply→Job-created latency p50/p99 (from the create's response to the
Job's ADDED event, both seen by this process), the operator's peak RSS (VmHWM), and, after
deleting the 1,000 objects, the time until every child Job is gone (garbage collection).

Usage: PYTHONPATH=hack .venv/bin/python bench/operator/load.py [--count 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from devcluster.binaries import ensure_binaries
from devcluster.controlplane import NODE, Cluster
from devcluster.processes import stop
from flywheel.kube import Kube, namespaced

API = "flywheel.dev/v1alpha1"
NAMESPACE = "bench"
TARGETS = {"p50": 0.5, "all": 60.0, "rss": 250.0}


def _dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": "sklearn://iris"}},
    }


def _run(name: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingRun",
        "metadata": {"name": name},
        "spec": {
            "model": f"m-{name}",
            "datasetRef": {"name": "ready"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
    }


def _rss_peak_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _watch_jobs(kube: Kube, seen: dict[str, float], stop_at: asyncio.Event) -> None:
    """Record the arrival time of every Job's ADDED event, by owner name."""
    url = kube.server + namespaced("batch/v1", NAMESPACE, "jobs") + "?watch=1"
    session = kube._session  # the same authenticated session
    while not stop_at.is_set():
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as answer:
                async for raw in answer.content:
                    event = json.loads(raw)
                    owners = event["object"]["metadata"].get("ownerReferences") or [{}]
                    if event["type"] == "ADDED" and owners[0].get("name"):
                        seen.setdefault(owners[0]["name"], time.monotonic())
                    if stop_at.is_set():
                        return
        except (aiohttp.ClientError, TimeoutError):
            await asyncio.sleep(0.2)


async def _create_all(kube: Kube, objects: list[dict[str, Any]]) -> dict[str, float]:
    sent: dict[str, float] = {}
    limit = asyncio.Semaphore(16)

    async def one(obj: dict[str, Any]) -> None:
        plural = "datasets" if obj["kind"] == "Dataset" else "trainingruns"
        async with limit:
            await kube.create(namespaced(API, NAMESPACE, plural), obj)
        sent[obj["metadata"]["name"]] = time.monotonic()

    await asyncio.gather(*(one(o) for o in objects))
    return sent


async def _measure(kube: Kube, count: int, operator_pid: int) -> dict[str, float]:
    objects = [_dataset(f"ds-{i}") for i in range(count)] + [_run(f"tr-{i}") for i in range(count)]
    seen: dict[str, float] = {}
    done = asyncio.Event()
    watcher = asyncio.create_task(_watch_jobs(kube, seen, done))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    sent = await _create_all(kube, objects)
    created = time.monotonic() - started
    deadline = time.monotonic() + 600
    while len([n for n in sent if n in seen]) < len(objects) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    missing = [n for n in sent if n not in seen]
    latencies = np.array([seen[n] - sent[n] for n in sent if n in seen])
    all_jobs = max(seen[n] for n in sent if n in seen) - started
    done.set()
    watcher.cancel()
    rss = _rss_peak_mb(operator_pid)
    # Delete the 1,000 objects; the garbage collector deletes their Jobs.
    deleting = time.monotonic()
    for plural, prefix in (("datasets", "ds-"), ("trainingruns", "tr-")):
        await asyncio.gather(
            *(kube.delete(namespaced(API, NAMESPACE, plural, f"{prefix}{i}")) for i in range(count))
        )
    while time.monotonic() - deleting < 600:
        jobs = await kube.get(namespaced("batch/v1", NAMESPACE, "jobs"))
        left = [
            j
            for j in jobs.get("items", [])
            if (j["metadata"].get("ownerReferences") or [{}])[0].get("name") != "ready"
        ]
        if not left:
            break
        await asyncio.sleep(0.5)
    return {
        "objects": len(objects),
        "create_seconds": created,
        "missing": len(missing),
        "p50": float(np.percentile(latencies, 50)),
        "p99": float(np.percentile(latencies, 99)),
        "max": float(latencies.max()),
        "all_jobs_seconds": all_jobs,
        "rss_mb": rss,
        "cleanup_seconds": time.monotonic() - deleting,
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=500, help="Datasets and TrainingRuns each")
    args = parser.parse_args(argv)
    binaries = ensure_binaries()
    work = Path(tempfile.mkdtemp(prefix="flywheel-bench-operator-"))
    cluster = Cluster(work / "cluster", binaries)
    state = cluster.up()
    kubectl = [binaries.path("kubectl"), f"--kubeconfig={cluster.kubeconfig}"]
    operator: subprocess.Popen[bytes] | None = None
    try:
        subprocess.run([*kubectl, "apply", "--server-side", "-f", "crds/"], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run([*kubectl, "wait", "--for=condition=Established", "crd", "--all"],
                       check=True, capture_output=True)  # fmt: skip
        subprocess.run([*kubectl, "create", "namespace", NAMESPACE], check=True)
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig), "FLYWHEEL_LIVENESS_PORT": "0",
               "FLYWHEEL_METRICS_PORT": "0"}  # fmt: skip
        log = (work / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "flywheel", "--namespace", NAMESPACE],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        subprocess.run([*kubectl, "-n", NAMESPACE, "apply", "-f", "-"],
                       input=json.dumps(_dataset("ready")).encode(), check=True)  # fmt: skip
        subprocess.run([*kubectl, "-n", NAMESPACE, "wait", "--for=condition=Ready",
                        "--timeout=300s", "dataset/ready"], check=True)  # fmt: skip
        stop(state.pids[NODE], cluster.binary(NODE), timeout=60)  # pods stay Pending from now
        os.environ["KUBECONFIG"] = str(cluster.kubeconfig)
        result = asyncio.run(_run_measure(args.count, operator.pid))
    finally:
        if operator is not None:
            operator.send_signal(signal.SIGTERM)
            operator.wait(timeout=60)
        cluster.down()
    _print(result)
    return 0 if result["missing"] == 0 else 1


async def _run_measure(count: int, pid: int) -> dict[str, float]:
    kube = Kube.login()
    try:
        return await _measure(kube, count, pid)
    finally:
        await kube.close()


def _print(r: dict[str, float]) -> None:
    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(f"\n{int(r['objects'])} objects created in {r['create_seconds']:.1f} s "
          f"(16 concurrent creates); {int(r['missing'])} without a Job after 600 s")  # fmt: skip
    print("| Measure | Value | Target | |\n|---|---|---|---|")
    print(f"| apply → Job created, p50 | {r['p50']:.3f} s | < {TARGETS['p50']} s | "
          f"{verdict(r['p50'] < TARGETS['p50'])} |")  # fmt: skip
    print(f"| apply → Job created, p99 (max) | {r['p99']:.3f} s ({r['max']:.2f} s) | | |")
    print(f"| every Job exists after | {r['all_jobs_seconds']:.1f} s | < {TARGETS['all']:.0f} s | "
          f"{verdict(r['all_jobs_seconds'] < TARGETS['all'])} |")  # fmt: skip
    print(f"| operator peak RSS | {r['rss_mb']:.0f} MB | < {TARGETS['rss']:.0f} MB | "
          f"{verdict(r['rss_mb'] < TARGETS['rss'])} |")  # fmt: skip
    print(f"| delete → every child Job gone | {r['cleanup_seconds']:.1f} s | | |")


if __name__ == "__main__":
    sys.exit(main())
