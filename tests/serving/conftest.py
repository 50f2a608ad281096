"""Serving tests: real model servers (`python -m flywheel_serving`) on loopback.

Artifacts are made the way the cluster makes them: the ingest and training Job code writes a
snapshot, its statistics and an ONNX model into a temporary artifacts root, once per session.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from flywheel.api.dataset import DatasetSpec
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import ArtifactStore
from flywheel.jobs.ingest import ingest
from flywheel.jobs.train import train
from tests.support.ports import free_port


@dataclass(frozen=True)
class Artifacts:
    """One trained model on the test artifacts root."""

    root: Path
    model_uri: str
    sha256: str
    stats_uri: str
    stats: dict[str, Any]
    features: list[dict[str, str]]
    classes: list[str] | None


def _make(
    root: Path, name: str, source: str, estimator: dict[str, Any], schema: dict[str, Any]
) -> Artifacts:
    store = ArtifactStore(root)
    spec = DatasetSpec.model_validate({"source": {"uri": source}, "schema": schema})
    data = ingest(spec, namespace="t", name=name, claim="art", store=store, previous_digest=None)
    run = TrainingRunSpec.model_validate(
        {"model": name, "datasetRef": {"name": name}, "estimator": estimator}
    )
    result = train(
        run,
        namespace="t",
        run=f"{name}-1",
        snapshot_uri=data.snapshot_uri,
        digest=data.digest,
        claim="art",
        store=store,
    )
    stats = json.loads(store.read_bytes(data.stats_uri))
    signature = result.signature
    return Artifacts(
        root,
        result.model_uri,
        result.sha256,
        data.stats_uri,
        stats,
        [f.model_dump(mode="json") for f in signature.features],
        signature.class_labels,
    )


@pytest.fixture(scope="session")
def artifacts_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


@pytest.fixture(scope="session")
def iris(artifacts_root: Path) -> Artifacts:
    estimator = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 30}}
    return _make(artifacts_root, "iris", "sklearn://iris", estimator, {"label": "target"})


@pytest.fixture(scope="session")
def diabetes(artifacts_root: Path) -> Artifacts:
    estimator = {"class": "sklearn.linear_model.Ridge"}
    return _make(artifacts_root, "diabetes", "sklearn://diabetes", estimator, {"label": "target"})


@pytest.fixture(scope="session")
def shops(artifacts_root: Path) -> Artifacts:
    """A classifier with a categorical feature (city) and a numeric one (spend)."""
    rng = np.random.default_rng(0)
    cities = [f"city{i}" for i in range(30)]
    rows = ["city,spend,bought"]
    for _ in range(600):
        city = cities[min(int(rng.exponential(6)), 29)]
        spend = float(rng.normal(50, 15))
        bought = int(spend > 50) if city != "city0" else 1
        rows.append(f"{city},{spend:.3f},{bought}")
    csv = artifacts_root / "shops.csv"
    csv.write_text("\n".join(rows) + "\n")
    # Unscaled spend (mean 50): lbfgs needs more than its default 100 iterations on some BLAS.
    estimator = {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}}
    schema = {
        "label": "bought",
        "features": [{"name": "city", "type": "categorical"}, {"name": "spend", "type": "numeric"}],
    }
    return _make(artifacts_root, "shops", f"file://{csv}", estimator, schema)


@dataclass
class Server:
    """A running model server."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path
    name: str
    grpc_target: str = ""
    """`127.0.0.1:<port>` of the gRPC API (empty with `grpc_port=0`)."""

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


ServerFactory = Callable[..., Server]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start servers: serve(artifacts, name, wait_ready=True, **flags)."""
    started: list[Server] = []

    def start(artifacts: Artifacts, name: str, *, wait_ready: bool = True, **flags: Any) -> Server:
        port = free_port()
        grpc_port = free_port()
        while grpc_port == port:
            grpc_port = free_port()
        options = {
            "model-uri": artifacts.model_uri,
            "model-name": name,
            "model-version": "3",
            "sha256": artifacts.sha256,
            "stats-uri": artifacts.stats_uri,
            "artifacts-root": str(artifacts.root),
            "host": "127.0.0.1",
            "port": str(port),
            "grpc-port": str(grpc_port),
            **{k.replace("_", "-"): str(v) for k, v in flags.items()},
        }
        argv = [sys.executable, "-m", "flywheel_serving"]
        for key, value in options.items():
            if value == "":
                continue
            argv += [f"--{key}", value] if value != "True" else [f"--{key}"]
        log = tmp_path / f"server-{len(started)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ}
            )
        grpc_target = f"127.0.0.1:{options['grpc-port']}" if options["grpc-port"] != "0" else ""
        server = Server(process, f"http://127.0.0.1:{port}", log, name, grpc_target)
        started.append(server)
        deadline = time.monotonic() + 60
        path = "/v2/health/ready" if wait_ready else "/v2/health/live"
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"the server exited: {server.output()[-3000:]}")
            try:
                if httpx.get(server.url + path, timeout=2).status_code == 200:
                    return server
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        pytest.fail(f"the server did not answer {path}: {server.output()[-3000:]}")

    yield start
    for server in started:
        if server.process.poll() is None:
            server.process.send_signal(signal.SIGTERM)
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()
        print(f"--- server log {server.log} ---\n{server.output()[-4000:]}")
