"""The operator under load, beside the operator as it was before the controller contract.

Usage: PYTHONPATH=hack .venv/bin/python bench/operator/load.py [--baseline COMMIT] [--only current]

For each operator (the baseline commit, extracted from git, and this checkout), on a fresh local
cluster whose API server audits the operator's own ServiceAccount:

1. idle: 1,000 finished objects (load_fixtures.py) exist when the operator starts; once it has
   settled (no write for 15 s), every request it makes in 60 s is counted from the audit log;
2. sustained: one client creates Datasets one after the other at 20 a second (the issue's
   "as fast as one client can, about 13-20/s here") for 60 s, with the node stopped (pods stay
   Pending, only the operator and the API server work); latency is from the Dataset's ADDED
   watch event to its Job's, both timestamped here;
3. burst: 500 Datasets and 500 TrainingRuns (on a Ready Dataset) created by 16 concurrent
   requests; latency from each create's answer to its Job's ADDED event; the operator's writes
   about each object until its Job existed (audit log); every Job's arrival; when every
   object's first status (one with an observedGeneration) arrived;
4. flat out: the same client as fast as it goes (this process's asyncio client does 25-75 a
   second: past what the machine's two cores serve, a stress figure with no target);
5. the operator's peak RSS (VmHWM) over all of it.

It prints one table: both operators side by side, the ratio, and the issue's targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightkube
import load_audit as audit
import load_fixtures as fixtures
import numpy as np
from lightkube.config.kubeconfig import KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.batch_v1 import Job
from load_setup import (
    ROOT,
    audited_cluster,
    baseline_source,
    kubectl,
    operator_kubeconfig,
    start_operator,
)

from devcluster.binaries import ensure_binaries
from devcluster.controlplane import NODE

BASELINE = "9381099"
"""The last commit before the controller contract: per-object timers polling every 3 s."""
IDLE, BENCH = "idle", "bench"
IDLE_OBJECTS = 1000
SUSTAIN = 60.0
RATE = 20.0
"""Creates a second in the sustained phase: the top of what one client does here (13-20/s)."""
BURST = 500
Dataset = create_namespaced_resource("flywheel.dev", "v1alpha1", "Dataset", "datasets")
TrainingRun = create_namespaced_resource("flywheel.dev", "v1alpha1", "TrainingRun", "trainingruns")
MANAGED = {"app.kubernetes.io/managed-by": "flywheel"}


@dataclass
class Seen:
    """When this process saw each object's ADDED event, and each owner's Job's."""

    objects: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, float] = field(default_factory=dict)
    job_names: dict[str, str] = field(default_factory=dict)
    reported: dict[str, float] = field(default_factory=dict)
    """When each object's status first carried an observedGeneration (its first report)."""


async def _watch(client: lightkube.AsyncClient, resource: Any, seen: Seen, jobs: bool) -> None:
    labels: dict[str, Any] | None = dict(MANAGED) if jobs else None
    async for kind, obj in client.watch(resource, namespace=BENCH, labels=labels):
        now = time.monotonic()
        if kind != "ADDED":
            continue
        if jobs:
            owner = (obj.metadata.ownerReferences or [None])[0]
            if owner is not None:
                seen.jobs.setdefault(owner.name, now)
                seen.job_names.setdefault(owner.name, obj.metadata.name)
        else:
            seen.objects.setdefault(obj.metadata.name, now)


async def _watch_reports(client: lightkube.AsyncClient, resource: Any, seen: Seen) -> None:
    async for _, obj in client.watch(resource, namespace=BENCH):
        status = getattr(obj, "status", None) or {}
        if status.get("observedGeneration") is not None:
            seen.reported.setdefault(obj.metadata.name, time.monotonic())


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    array = np.array(values) if values else np.array([float("nan")])
    return float(np.percentile(array, 50)), float(np.percentile(array, 99)), float(array.max())


async def _create(client: lightkube.AsyncClient, namespace: str, body: dict[str, Any]) -> Any:
    resource: Any = {"Dataset": Dataset, "TrainingRun": TrainingRun}.get(body["kind"])
    if resource is None:
        resource = create_namespaced_resource(
            "flywheel.dev", "v1alpha1", body["kind"], body["kind"].lower() + "s"
        )
    placed = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
    return await client.create(resource.from_dict(placed))


async def _patch_status(
    client: lightkube.AsyncClient, namespace: str, created: Any, status: dict[str, Any]
) -> None:
    cls = type(created)
    await client.patch(
        cls.Status,
        created.metadata.name,
        {"status": status},
        namespace=namespace,
        patch_type=lightkube.types.PatchType.MERGE,
    )


async def sustained(
    client: lightkube.AsyncClient, prefix: str, rate: float | None
) -> dict[str, float]:
    """One client creating one Dataset after the other for SUSTAIN seconds: at most `rate` a
    second, or as fast as it goes (None)."""
    seen = Seen()
    watchers = [
        asyncio.create_task(_watch(client, Dataset, seen, jobs=False)),
        asyncio.create_task(_watch(client, Job, seen, jobs=True)),
    ]
    await asyncio.sleep(1)
    names: list[str] = []
    start = time.monotonic()
    while time.monotonic() - start < SUSTAIN:
        if rate is not None:
            await asyncio.sleep(max(0.0, start + len(names) / rate - time.monotonic()))
        name = f"{prefix}-{len(names)}"
        await _create(client, BENCH, fixtures.dataset(name))
        names.append(name)
    achieved = len(names) / (time.monotonic() - start)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and any(n not in seen.jobs for n in names):
        await asyncio.sleep(0.2)
    for task in watchers:
        task.cancel()
    latencies = [
        seen.jobs[n] - seen.objects[n] for n in names if n in seen.jobs and n in seen.objects
    ]
    p50, p99, worst = _percentiles(latencies)
    missing = sum(n not in seen.jobs for n in names)
    return {
        "rate": achieved,
        "count": len(names),
        "p50": p50,
        "p99": p99,
        "max": worst,
        "missing": missing,
    }


async def burst(client: lightkube.AsyncClient, log: Path) -> dict[str, float]:
    """BURST Datasets and BURST TrainingRuns at once."""
    seen = Seen()
    watchers = [
        asyncio.create_task(_watch(client, Job, seen, jobs=True)),
        *(asyncio.create_task(_watch_reports(client, r, seen)) for r in (Dataset, TrainingRun)),
    ]
    await asyncio.sleep(1)
    bodies = [fixtures.dataset(f"burst-ds-{i}") for i in range(BURST)]
    bodies += [fixtures.training_run(f"burst-tr-{i}", "ready", f"m-{i}") for i in range(BURST)]
    answered: dict[str, float] = {}
    limit = asyncio.Semaphore(16)

    async def one(body: dict[str, Any]) -> None:
        async with limit:
            await _create(client, BENCH, body)
        answered[body["metadata"]["name"]] = time.monotonic()

    started = time.monotonic()
    await asyncio.gather(*(one(b) for b in bodies))
    created = time.monotonic() - started
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and any(
        n not in seen.jobs or n not in seen.reported for n in answered
    ):
        await asyncio.sleep(0.2)
    for watcher in watchers:
        watcher.cancel()
    latencies = [seen.jobs[n] - answered[n] for n in answered if n in seen.jobs]
    p50, p99, worst = _percentiles(latencies)
    every = max(seen.jobs[n] for n in answered if n in seen.jobs) - started
    reported = max(seen.reported[n] for n in answered if n in seen.reported) - started
    reported_p50, _, _ = _percentiles(
        [seen.reported[n] - answered[n] for n in answered if n in seen.reported]
    )
    await asyncio.sleep(5)  # the audit log is written asynchronously
    requests = audit.read(log)
    job_created = {
        r.name: r.received for r in requests if r.resource == "jobs" and r.verb == "create"
    }
    counts = []
    for name in answered:
        job = seen.job_names.get(name)
        if job is not None and job in job_created:
            counts.append(audit.writes_until(requests, BENCH, name, job, job_created[job]))
    return {
        "created": created,
        "p50": p50,
        "p99": p99,
        "max": worst,
        "every": every,
        "reported": reported,
        "reported_p50": reported_p50,
        "unreported": sum(n not in seen.reported for n in answered),
        "missing": sum(n not in seen.jobs for n in answered),
        "writes": float(np.mean(counts)) if counts else float("nan"),
        "writes_max": float(max(counts, default=0)),
    }


def _client(kubeconfig: Path) -> lightkube.AsyncClient:
    config = KubeConfig.from_file(kubeconfig)
    return lightkube.AsyncClient(config=config, field_manager="flywheel-bench", timeout=None)


async def _idle_objects(kubeconfig: Path) -> int:
    client = _client(kubeconfig)
    try:
        return await fixtures.idle_objects(
            IDLE,
            lambda ns, body: _create(client, ns, body),
            lambda ns, created, status: _patch_status(client, ns, created, status),
            IDLE_OBJECTS,
        )
    finally:
        await client.close()


def _settle(log: Path, started: float, quiet: float = 15.0, limit: float = 420.0) -> float:
    """Wait until the operator has written nothing for `quiet` seconds; how long it took."""
    while time.time() - started < limit:
        time.sleep(2)
        writes = [r.received for r in audit.read(log) if r.write and r.received >= started]
        last = max(writes, default=started)
        if time.time() - last >= quiet and time.time() - started >= 30:
            return last - started
    return float("nan")


async def _phases(admin: Path, log: Path) -> dict[str, float]:
    client = _client(admin)
    try:
        steady = await sustained(client, "sus", RATE)
        crowd = await burst(client, log)
        flat_out = await sustained(client, "max", None)
    finally:
        await client.close()
    return {
        **{f"sustained_{k}": v for k, v in steady.items()},
        **{f"burst_{k}": v for k, v in crowd.items()},
        **{f"flat_{k}": v for k, v in flat_out.items()},
    }


def measure(label: str, commit: str | None, work: Path) -> dict[str, float]:
    """Every figure of one operator, on a fresh cluster."""
    binaries = ensure_binaries()
    cluster = audited_cluster(work, binaries)
    cluster.up()
    log = work / "audit" / "audit.log"
    operator = None
    try:
        kubectl(cluster, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(cluster, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        for namespace in (IDLE, BENCH):
            kubectl(cluster, "create", "namespace", namespace)
        identity = operator_kubeconfig(cluster, work)
        idle = asyncio.run(_idle_objects(cluster.kubeconfig))
        source = baseline_source(commit, work) if commit else None
        started = time.time()
        operator = start_operator(label, identity, [IDLE, BENCH], work, source)
        settled = _settle(log, started)
        window = time.time()
        time.sleep(60)
        quiet = audit.between(audit.read(log), window, window + 60)
        print(f"  {label} idle: {audit.breakdown(quiet)}", flush=True)
        kubectl(cluster, "-n", BENCH, "apply", "-f", "-", stdin=_json(fixtures.dataset("ready")))
        kubectl(
            cluster, "-n", BENCH, "wait", "--for=condition=Ready", "--timeout=300s", "dataset/ready"
        )
        cluster.stop_component(NODE)  # pods stay Pending from now on
        figures = asyncio.run(_phases(cluster.kubeconfig, log))
        return {
            "idle_objects": idle,
            "settle": settled,
            "idle_requests": len(quiet),
            "idle_writes": sum(r.write for r in quiet),
            **figures,
            "rss": operator.peak_rss_mb(),
        }
    finally:
        if operator is not None:
            operator.process.send_signal(signal.SIGTERM)
            try:
                operator.process.wait(timeout=60)
            except Exception:
                operator.process.kill()
        cluster.down()


def _json(obj: dict[str, Any]) -> str:
    return json.dumps(obj)


Check = Callable[[float], bool] | None
ROWS: tuple[tuple[str, str, str, Check], ...] = (
    (
        "idle: requests a minute, 1,000 finished objects",
        "idle_requests",
        "0 per object",
        lambda v: v <= 10,
    ),
    ("idle: writes a minute", "idle_writes", "", None),
    ("sustained: one client's Datasets a second", "sustained_rate", "13-20", None),
    ("sustained: apply -> Job p50 (s)", "sustained_p50", "<= 0.2", lambda v: v <= 0.2),
    ("sustained: apply -> Job p99 (s)", "sustained_p99", "<= 1", lambda v: v <= 1.0),
    ("flat out: one client's Datasets a second", "flat_rate", "", None),
    ("flat out: apply -> Job p50 (s)", "flat_p50", "", None),
    ("flat out: apply -> Job p99 (s)", "flat_p99", "", None),
    ("burst: the 1,000 creates took (s)", "burst_created", "", None),
    ("burst: apply -> Job p50 (s)", "burst_p50", "<= 5", lambda v: v <= 5.0),
    ("burst: apply -> Job p99 (s)", "burst_p99", "", None),
    ("burst: every Job after (s)", "burst_every", "<= 45", lambda v: v <= 45.0),
    ("burst: apply -> first status p50 (s)", "burst_reported_p50", "", None),
    ("burst: every object's first status after (s)", "burst_reported", "", None),
    ("burst: objects without a status", "burst_unreported", "0", lambda v: v == 0),
    ("burst: writes per object until its Job", "burst_writes", "<= 2", lambda v: v <= 2.0),
    ("burst: objects without a Job", "burst_missing", "0", lambda v: v == 0),
    ("peak RSS (MB)", "rss", "<= 250", lambda v: v <= 250.0),
)


def report(results: dict[str, dict[str, float]]) -> str:
    """The table: each operator's figure, the ratio current / baseline, the target."""
    labels = list(results)
    header = "| Measure | " + " | ".join(labels) + " | ratio | target | |"
    lines = [header, "|" + "---|" * (len(labels) + 4)]
    for title, key, target, check in ROWS:
        values = [results[label].get(key, float("nan")) for label in labels]
        ratio = ""
        if len(values) == 2 and values[0] not in (0, float("nan")) and values[0] == values[0]:
            ratio = f"{values[1] / values[0]:.2g}x"
        met = ""
        if check is not None and values[-1] == values[-1]:
            met = "met" if check(values[-1]) else "MISSED"
        cells = " | ".join(f"{v:.3g}" for v in values)
        lines.append(f"| {title} | {cells} | {ratio} | {target} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure the baseline and the current operator, one after the other; print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", default=BASELINE, help="the commit to compare with")
    parser.add_argument("--only", choices=("baseline", "current"), help="measure one operator")
    parser.add_argument("--scale", type=float, default=1.0, help="shrink the workload (trials)")
    args = parser.parse_args(argv)
    global IDLE_OBJECTS, SUSTAIN, BURST
    IDLE_OBJECTS, BURST = int(IDLE_OBJECTS * args.scale), int(BURST * args.scale)
    SUSTAIN = SUSTAIN * args.scale
    runs = [(f"0.1 ({args.baseline}, polling)", args.baseline), ("current (events)", None)]
    if args.only:
        runs = [runs[0] if args.only == "baseline" else runs[1]]
    results = {}
    for label, commit in runs:
        print(f"measuring {label} ...", flush=True)
        with tempfile.TemporaryDirectory(prefix="flywheel-bench-operator-") as work:
            results[label] = measure(label, commit, Path(work))
        print(f"  {results[label]}", flush=True)
    given = " ".join(argv or sys.argv[1:])
    print(f"\ncommand: PYTHONPATH=hack .venv/bin/python bench/operator/load.py {given}")
    print(report(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
