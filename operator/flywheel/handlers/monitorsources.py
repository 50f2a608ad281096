"""Where a ModelMonitor's numbers come from: the baseline, and the window's counts.

- The baseline is the document the serving pods bin on, read once per ModelVersion from a ready
  pod (`GET /v2/models/<model>/versions/<v>/baseline`) and cached: a version's artifacts never
  change, and the operator needs no access to the artifact store.
- `Pods`: the ready endpoints of the serving Service's EndpointSlices are scraped at each
  evaluation and folded into a :class:`~flywheel.windows.PodWindow` kept in memory per monitor
  and serving version (after an operator restart the window refills over one `window`).
- `Prometheus`: one `increase(...[window])` instant query per counter.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flywheel.api.modelmonitor import ModelMonitorSpec
from flywheel.handlers.context import OperatorContext
from flywheel.kube import Kube, namespaced
from flywheel.modelmonitors import duration, parse_time
from flywheel.podhttp import HttpFailure, get_ok, prometheus_vector
from flywheel.servingchildren import PORT, child_name, selector_string
from flywheel.windows import (
    SLOT_LABELS,
    PodScrape,
    PodWindow,
    WindowCounts,
    from_vectors,
    parse_scrape,
    promql,
)

Obj = dict[str, Any]


class SourceFailure(Exception):
    """The metrics source or the pods cannot be read; the message says what failed."""


async def ready_pods(kube: Kube, namespace: str, deployment: str) -> dict[str, tuple[str, Obj]]:
    """Ready serving pods by UID: (IP from the EndpointSlices, the pod)."""
    service = quote(f"kubernetes.io/service-name={child_name(deployment)}")
    slices = await kube.get(
        namespaced("discovery.k8s.io/v1", namespace, "endpointslices") + f"?labelSelector={service}"
    )
    pods = await kube.get(
        namespaced("v1", namespace, "pods") + f"?labelSelector={quote(selector_string(deployment))}"
    )
    by_uid = {p["metadata"]["uid"]: p for p in pods.get("items", [])}
    found: dict[str, tuple[str, Obj]] = {}
    for item in slices.get("items", []):
        for endpoint in item.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            ready = (endpoint.get("conditions") or {}).get("ready")
            addresses = endpoint.get("addresses") or []
            if ready and addresses and ref.get("uid") in by_uid:
                found[ref["uid"]] = (addresses[0], by_uid[ref["uid"]])
    return found


async def baseline(kube: Kube, ctx: OperatorContext, md: Obj, version: Obj) -> Obj:
    """The baseline of the serving ModelVersion, from a ready pod that serves it."""
    uid = version["metadata"]["uid"]
    cached = ctx.baselines.get(uid)
    if cached is not None:
        return cached
    meta, number = md["metadata"], version["spec"]["version"]
    model = md["spec"]["model"]
    pods = await ready_pods(kube, meta["namespace"], meta["name"])
    errors = []
    for ip, pod in pods.values():
        if pod["metadata"].get("labels", {}).get("flywheel.dev/version") != str(number):
            continue
        try:
            text = await get_ok(f"http://{ip}:{PORT}/v2/models/{model}/versions/{number}/baseline")
        except HttpFailure as error:
            errors.append(str(error))
            continue
        document: Obj = json.loads(text)
        if len(ctx.baselines) > 256:
            ctx.baselines.clear()
        ctx.baselines[uid] = document
        return document
    why = "; ".join(errors[:2]) or f"no ready pod serves version {number}"
    raise SourceFailure(f"cannot read the baseline of {model} v{number}: {why}")


async def window_counts(
    kube: Kube,
    ctx: OperatorContext,
    monitor: Obj,
    spec: ModelMonitorSpec,
    md: Obj,
    version: Obj,
    now: datetime,
) -> WindowCounts:
    """The window's counts from the configured source."""
    model, number = md["spec"]["model"], str(version["spec"]["version"])
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
                *(prometheus_vector(source.prometheus.url, q) for q in queries.values())
            )
        except HttpFailure as error:
            raise SourceFailure(f"Prometheus at {source.prometheus.url}: {error}") from error
        return WindowCounts.from_counters(from_vectors(zip(queries, answers, strict=True)))
    key = f"{monitor['metadata']['uid']}/{version['metadata']['uid']}"
    tracker = ctx.windows.get(key)
    if tracker is None:
        for stale in [k for k in ctx.windows if k.startswith(f"{monitor['metadata']['uid']}/")]:
            del ctx.windows[stale]  # the deployment moved to another version
        tracker = ctx.windows[key] = PodWindow(keep=span)
    pods = await ready_pods(kube, md["metadata"]["namespace"], md["metadata"]["name"])
    texts = await asyncio.gather(
        *(get_ok(f"http://{ip}:{PORT}/metrics") for ip, _ in pods.values()),
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
        started = parse_time((pod.get("status") or {}).get("startTime"))
        scrapes[uid] = PodScrape(parse_scrape(text, model, number), started)
    tracker.keep = span
    tracker.observe(now, scrapes)
    return tracker.window(now, span)
