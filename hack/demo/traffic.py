"""Steady inference traffic to the ready endpoints of a Service, routed as kube-proxy would (from
EndpointSlices, refreshed a few times a second; the local node has no Service proxy), with the
request rate, p50/p99 latency and every failed request recorded."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from demo.data import request_body
from demo.kube import CommandFailed, Kube


def ready_endpoints(kube: Kube, service: str) -> list[str]:
    """`ip:port` of the Service's ready endpoints."""
    slices = kube.json("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}")
    found = []
    for item in slices["items"]:
        port = next((p["port"] for p in item.get("ports") or () if p.get("name") == "http"), None)
        for endpoint in item.get("endpoints") or ():
            if endpoint.get("conditions", {}).get("ready") and port:
                found += [f"{address}:{port}" for address in endpoint["addresses"]]
    return sorted(found)


@dataclass
class Traffic:
    """Requests of `rows` rows of the current era, one fresh connection each."""

    kube: Kube
    service: str
    model: str
    rows: int = 20
    era: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    _latencies: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=5000))
    _endpoints: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Traffic:
        """Send until stopped."""
        self._endpoints = ready_endpoints(self.kube, self.service)
        self._threads = [
            threading.Thread(target=self._refresh, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop and wait for the senders."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def answered(self) -> int:
        """Requests answered 200."""
        return sum(self.versions.values())

    def rate_and_latency(self, seconds: float = 10) -> tuple[float, float, float]:
        """(requests/s, p50 ms, p99 ms) over the last `seconds`."""
        now = time.monotonic()
        recent = [d for t, d in self._latencies if now - t <= seconds]
        if not recent:
            return 0.0, 0.0, 0.0
        p50, p99 = np.percentile(recent, [50, 99])
        return len(recent) / seconds, float(p50) * 1000, float(p99) * 1000

    def _refresh(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._endpoints = ready_endpoints(self.kube, self.service) or self._endpoints
            except CommandFailed:
                continue  # a kubectl hiccup: keep the last known endpoints

    def _send(self) -> None:
        rng = np.random.default_rng(11)
        while not self._stop.is_set():
            if not self._endpoints:
                time.sleep(0.1)
                continue
            target = random.choice(self._endpoints)
            body = json.dumps(request_body(self.rows, self.era, rng)).encode()
            request = urllib.request.Request(
                f"http://{target}/v2/models/{self.model}/infer",
                data=body,
                headers={"Content-Type": "application/json"},
            )
            started = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    version = json.loads(answer.read()).get("model_version")
                self.versions[str(version)] += 1
                self._latencies.append((time.monotonic(), time.monotonic() - started))
            except (OSError, ValueError) as error:
                self.failures.append(f"{target}: {type(error).__name__}: {error}")
            time.sleep(0.02)
