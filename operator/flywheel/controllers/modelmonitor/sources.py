"""Where a ModelMonitor's numbers come from: the baseline, and the window's counts.

- The baseline is the document the serving pods bin on, read once per ModelVersion from a ready
  pod (`GET /v2/models/<model>/versions/<v>/baseline`) and kept: a version's artifacts never
  change, and the operator needs no access to the artifact store.
- `Pods`: the ready endpoints of the serving Service's EndpointSlices are scraped at each
  evaluation and folded into a :class:`~.windows.PodWindow` kept in memory per monitor and
  serving version (after an operator restart the window refills over one `window`).
- `Prometheus`: one `increase(...[window])` instant query per counter.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime

from flywheel.api.modelmonitor import ModelMonitorSpec
from flywheel.controllers.modelmonitor.windows import (
    PodScrape,
    PodWindow,
    WindowCounts,
    from_vectors,
    parse_scrape,
    promql,
)
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.core.resources import ENDPOINT_SLICES, PODS
from flywheel.core.serving import VERSION_LABEL
from flywheel.core.statuses import version_number
from flywheel.core.times import duration, parse_time
from flywheel.kube.podhttp import HttpFailure
from flywheel.runtime.controller import Env
from flywheel_serving.names import METRICS_PATH, PORT, SLOT_LABELS, baseline_path

MAX_BASELINES = 256


class SourceFailure(Exception):
    """The metrics source or the pods cannot be read; the message says what failed."""


@dataclass
class MonitorMemory:
    """What the monitor keeps in the operator's memory between evaluations."""

    windows: dict[tuple[str, str, str], PodWindow] = field(default_factory=dict)
    """The `Pods` source's snapshots, per (namespace, monitor, serving version UID)."""
    baselines: dict[str, Obj] = field(default_factory=dict)
    """Baseline documents read from serving pods, per ModelVersion UID (immutable)."""

    def forget(self, namespace: str, name: str) -> None:
        """Drop a monitor's windows."""
        for key in [k for k in self.windows if k[:2] == (namespace, name)]:
            del self.windows[key]


async def ready_pods(
    env: Env, namespace: str, service: str, selector: dict[str, str]
) -> dict[str, tuple[str, Obj]]:
    """Ready serving pods by UID: (IP from the EndpointSlices, the pod)."""
    slices = await env.kube.list(
        ENDPOINT_SLICES, namespace, {"kubernetes.io/service-name": service}
    )
    pods = await env.kube.list(PODS, namespace, selector)
    by_uid = {meta_of(p)["uid"]: p for p in pods}
    found: dict[str, tuple[str, Obj]] = {}
    for item in slices:
        for endpoint in item.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            ready = (endpoint.get("conditions") or {}).get("ready")
            addresses = endpoint.get("addresses") or []
            if ready and addresses and ref.get("uid") in by_uid:
                found[ref["uid"]] = (addresses[0], by_uid[ref["uid"]])
    return found


async def baseline(
    env: Env, memory: MonitorMemory, model: str, version: Obj, pods: dict[str, tuple[str, Obj]]
) -> Obj:
    """The baseline of the serving ModelVersion, from a ready pod that serves it."""
    uid = str(meta_of(version)["uid"])
    cached = memory.baselines.get(uid)
    if cached is not None:
        return cached
    number = version_number(version)
    errors = []
    for ip, pod in pods.values():
        if meta_of(pod).get("labels", {}).get(VERSION_LABEL) != str(number):
            continue
        try:
            text = await env.http.get_ok(f"http://{ip}:{PORT}{baseline_path(model, number)}")
        except HttpFailure as error:
            errors.append(str(error))
            continue
        document: Obj = json.loads(text)
        if len(memory.baselines) >= MAX_BASELINES:
            memory.baselines.clear()
        memory.baselines[uid] = document
        return document
    why = "; ".join(errors[:2]) or f"no ready pod serves version {number}"
    raise SourceFailure(f"cannot read the baseline of {model} v{number}: {why}")


async def window_counts(
    env: Env,
    memory: MonitorMemory,
    key: tuple[str, str],
    spec: ModelMonitorSpec,
    model: str,
    version: Obj,
    pods: dict[str, tuple[str, Obj]],
    now: datetime,
) -> WindowCounts:
    """The window's counts from the configured source."""
    number = str(version_number(version))
    span = duration(spec.window)
    source = spec.metrics_source
    if source.type == "Prometheus":
        assert source.prometheus is not None
        extra = ",".join(
            f"{k}={json.dumps(v)}" for k, v in sorted(source.prometheus.matchers.items())
        )
        seconds = max(int(span.total_seconds()), 1)
        queries = {m: promql(m, model, number, seconds, extra) for m in SLOT_LABELS}
        try:
            answers = await asyncio.gather(
                *(env.http.prometheus_vector(source.prometheus.url, q) for q in queries.values())
            )
        except HttpFailure as error:
            raise SourceFailure(f"Prometheus at {source.prometheus.url}: {error}") from error
        return WindowCounts.from_counters(from_vectors(zip(queries, answers, strict=True)))
    window_key = (*key, str(meta_of(version)["uid"]))
    tracker = memory.windows.get(window_key)
    if tracker is None:
        memory.forget(*key)  # the deployment moved to another version
        tracker = memory.windows[window_key] = PodWindow(keep=span)
    texts = await asyncio.gather(
        *(env.http.get_ok(f"http://{ip}:{PORT}{METRICS_PATH}") for ip, _ in pods.values()),
        return_exceptions=True,
    )
    failed = [t for t in texts if isinstance(t, BaseException)]
    if pods and len(failed) == len(pods):
        raise SourceFailure(f"no serving pod could be scraped: {failed[0]}")
    scrapes: dict[str, PodScrape] = {}
    for (uid, (_, pod)), text in zip(pods.items(), texts, strict=True):
        if isinstance(text, BaseException):
            if uid in tracker.last:  # missed once: keep its last counters, lose nothing
                scrapes[uid] = PodScrape(tracker.last[uid], None)
            continue
        started = parse_time(status_of(pod).get("startTime"))
        scrapes[uid] = PodScrape(parse_scrape(text, model, number), started)
    tracker.keep = span
    tracker.observe(now, scrapes)
    return tracker.window(now, span)
