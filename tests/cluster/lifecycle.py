"""Helpers shared by the lifecycle tests on the real cluster: quick-start objects, trained
versions, the files behind `pvc://` URIs, and a client that sends traffic to ready endpoints."""

from __future__ import annotations

import json
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube import Kubectl, condition

QUICKSTART = Path("examples/quickstart")


def run_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """The quick-start TrainingRun under another name, with spec fields replaced."""
    base = yaml.safe_load((QUICKSTART / "02-trainingrun.yaml").read_text())
    return {**base, "metadata": {"name": name}, "spec": {**base["spec"], **spec}}


def get(k: Kubectl, kind: str, name: str) -> dict[str, Any]:
    """One object."""
    return dict(k.json("get", kind, name))


def cond(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    """A condition, or {} when absent."""
    return condition(obj, type_) or {}


def artifact_path(k: Kubectl, uri: str) -> Path:
    """The host file behind a pvc:// URI (the local node's hostPath volume)."""
    claim, _, relative = uri.removeprefix("pvc://").partition("/")
    volume = k.json("get", "pvc", claim)["spec"]["volumeName"]
    root = k.json("get", "pv", volume)["spec"]["hostPath"]["path"]
    return Path(root) / relative


def versions(k: Kubectl, model: str) -> list[dict[str, Any]]:
    """The model's ModelVersions, oldest first."""
    items = k.json("get", "modelversions", "-l", f"flywheel.dev/model={model}")["items"]
    return sorted(items, key=lambda v: v["spec"]["version"])


def dataset_ready(k: Kubectl) -> dict[str, Any]:
    """The quick-start Dataset, once Ready."""
    k.apply((QUICKSTART / "01-dataset.yaml").read_text())
    k("wait", "--for=condition=Ready", "--timeout=180s", "dataset/iris")
    return get(k, "dataset", "iris")


def train(k: Kubectl, name: str, *, validated: bool = True, **spec: Any) -> dict[str, Any]:
    """Run a TrainingRun to completion; its ModelVersion once judged."""
    k.apply(run_manifest(name, **spec))
    k("wait", "--for=condition=Succeeded", "--timeout=240s", f"trainingrun/{name}")
    version = get(k, "trainingrun", name)["status"]["modelVersionRef"]["name"]
    wanted = "Validated" if validated else "Validated=False"
    k("wait", f"--for=condition={wanted}", "--timeout=60s", f"modelversion/{version}")
    return get(k, "modelversion", version)


def ready_endpoints(k: Kubectl, service: str) -> list[str]:
    """`ip:port` of the Service's ready endpoints, as kube-proxy would route to them."""
    slices = k.json("get", "endpointslices", "-l", f"kubernetes.io/service-name={service}")
    found = []
    for item in slices["items"]:
        port = next((p["port"] for p in item.get("ports") or () if p.get("name") == "http"), None)
        for endpoint in item.get("endpoints") or ():
            if endpoint.get("conditions", {}).get("ready") and port:
                found += [f"{address}:{port}" for address in endpoint["addresses"]]
    return sorted(found)


def post(url: str, body: dict[str, Any], timeout: float = 5) -> tuple[int, dict[str, Any]]:
    """POST JSON on a fresh connection; (status, decoded body)."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def get_text(url: str, timeout: float = 5) -> str:
    """GET a text resource (a pod's /metrics)."""
    with urllib.request.urlopen(url, timeout=timeout) as answer:
        return str(answer.read().decode())


def infer_body(examples: dict[str, Any]) -> dict[str, Any]:
    """An OIP v2 request with the recorded example rows (one tensor per feature)."""
    columns = list(zip(*examples["rows"], strict=True))
    return {
        "inputs": [
            {"name": name, "shape": [len(values)], "datatype": "FP64", "data": list(values)}
            for name, values in zip(examples["features"], columns, strict=True)
        ]
    }


@dataclass
class Traffic:
    """Continuous requests to the ready endpoints of a Service, refreshed like kube-proxy
    does (from EndpointSlices, a few times a second), one fresh connection per request."""

    k: Kubectl
    service: str
    path: str
    body: dict[str, Any]
    make_body: Callable[[], dict[str, Any]] | None = None
    """Draws each request's body (else `body` every time)."""
    answers: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    _endpoints: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> Traffic:
        self._endpoints = ready_endpoints(self.k, self.service)
        assert self._endpoints, "no ready endpoint to send traffic to"
        self._threads = [
            threading.Thread(target=self._refresh, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    @property
    def total(self) -> int:
        """Requests answered or failed so far."""
        return sum(self.answers.values()) + len(self.errors)

    def _refresh(self) -> None:
        while not self._stop.wait(0.25):
            try:
                self._endpoints = ready_endpoints(self.k, self.service) or self._endpoints
            except AssertionError:
                continue  # kubectl hiccup: keep the last known endpoints

    def _send(self) -> None:
        while not self._stop.is_set():
            target = random.choice(self._endpoints)
            try:
                body = self.make_body() if self.make_body is not None else self.body
                status, answer = post(f"http://{target}{self.path}", body)
            except (OSError, ValueError) as error:
                self.errors.append(f"{target}: {type(error).__name__}: {error}")
                continue
            if status != 200:
                self.errors.append(f"{target}: HTTP {status}: {answer}")
            else:
                self.answers[str(answer.get("model_version"))] += 1
            time.sleep(0.01)
