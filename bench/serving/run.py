"""Serving benchmark: our server side by side with its peers, same machine, same model, one run.

Usage:  .venv/bin/python bench/serving/run.py [--quick] [--duration 10] [--reps 3]
        [--models iris-rf,lr-20] [--rows 1,100] [--servers flywheel,flywheel-nomon,...]
        [--protocols json,binary,grpc]

Servers (each on core 1, the load generator on core 0; see docs/serving.md for the reading):
  flywheel          python -m flywheel_serving (monitoring on: the default)
  flywheel-nomon    the same with --no-monitoring (what the drift metrics cost; JSON rows only)
  flywheel-nogrpc   the same with --grpc-port 0 (what an idle gRPC port costs REST; JSON rows
                    only; measured only when named)
  floor             our HTTP stack answering a constant (uvicorn + uvloop + httptools)
  floor-grpc        a grpc.aio server answering a constant (gRPC rows only)
  echo-grpc         a Go gRPC server answering a constant: how far ghz itself reaches (gRPC rows)
  fastapi-ort       a hand-written FastAPI + onnxruntime app (what a user would write)
  mlserver-ort      MLServer with a minimal onnxruntime runtime, parallel_workers=0
  mlserver-sklearn  MLServer's scikit-learn runtime on a joblib file (what users deploy)
  raw-ort           onnxruntime session.run in-process, no HTTP (the model's own cost)

Protocols (rows are named server, server-binary, server-grpc):
  json      OIP v2 JSON over HTTP/1.1, driven by wrk
  binary    the OIP v2 binary tensor data extension over HTTP/1.1 (JSON header + raw FP32 bytes,
            binary outputs asked for), driven by wrk; a server that refuses it is listed as n/a
  grpc      inference.GRPCInferenceService/ModelInfer (typed fp32_contents), driven by ghz

Columns: req/s median (min-max) of the repetitions; p50/p99 and the CPU shares are medians.
client: the load generator's CPU time over the run (near 100 %: the client, not the server, was
the limit); server: the server process's; others: the most cores anything else on the machine
used during one of the runs (other people's work on a shared VM: a disturbed row shows there);
req/CPU-s: requests per second of server CPU time (what a starved server would have done alone).
--max-others N measures a run again while others exceeds N cores.

Models: RandomForest (100 trees) on iris, LogisticRegression on 20 numeric features. Bodies: one
2-D FP32 tensor of 1 and 100 rows. Concurrency 1, 4, 16; 3 s warm-up, 10 s runs, 3 repetitions
in alternating server order. Peers live in their own virtualenvs under the work directory
($FLYWHEEL_BENCH_DIR, default ~/.cache/flywheel/bench-serving); wrk 4.1 comes from Debian's
packages (apt-get download, unpacked there, no system install), ghz is built there with
`go install` from the Go module proxy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/: peer_venv

import peer_venv
from peer_apps import FASTAPI_APP, MLSERVER_ORT_RUNTIME
from protocols import (
    Messages,
    Sample,
    binary_body,
    ensure_echo,
    ensure_ghz,
    ghz,
    grpc_call,
    grpc_request,
    lua_binary,
    measured,
    protoset,
    wait_grpc,
)

SERVERS = (
    "flywheel",
    "flywheel-nomon",
    "floor",
    "floor-grpc",
    "echo-grpc",
    "fastapi-ort",
    "mlserver-ort",
    "mlserver-sklearn",
    "flywheel-nogrpc",
)
OPTIONAL = ("flywheel-nogrpc",)
"""Servers measured only when --servers names them."""
PROTOCOLS = ("json", "binary", "grpc")
JSON_ONLY = frozenset({"flywheel-nomon", "flywheel-nogrpc"})
"""Servers measured on JSON alone: the monitoring cost is a question of the JSON rows."""
ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("FLYWHEEL_BENCH_DIR", Path.home() / ".cache/flywheel/bench-serving"))
PYTHON = ROOT / ".venv/bin/python"
SERVER_CORE, CLIENT_CORE = "1", "0"


@dataclass(frozen=True)
class ModelFiles:
    """One benchmark model in every format."""

    name: str
    onnx: Path
    sha256: str
    stats: Path
    joblib: Path
    features: int
    sample: np.ndarray[Any, Any]


def build_models() -> list[ModelFiles]:
    """Train both models with Flywheel's own Job code (ONNX) and plain scikit-learn (joblib)."""
    import joblib  # type: ignore[import-untyped]
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    from flywheel.api.dataset import DatasetSpec
    from flywheel.api.trainingrun import TrainingRunSpec
    from flywheel.artifacts import ArtifactStore
    from flywheel.jobs.ingest import ingest
    from flywheel.jobs.train import train

    root = WORK / "artifacts"
    shutil.rmtree(root, ignore_errors=True)
    store = ArtifactStore(root)
    iris = load_iris()
    x_lr, y_lr = make_classification(n_samples=2000, n_features=20, n_informative=8, random_state=0)
    cases = [
        (
            "iris-rf",
            iris.data,
            iris.target,
            RandomForestClassifier(n_estimators=100, random_state=0),
            {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 100}},
        ),
        (
            "lr-20",
            x_lr,
            y_lr,
            LogisticRegression(max_iter=1000),
            {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 1000}},
        ),
    ]
    models = []
    for name, x, y, plain, estimator in cases:
        columns = [f"f{i}" for i in range(x.shape[1])]
        csv = root / f"{name}.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        lines = [",".join([*columns, "label"])]
        lines += [
            ",".join([*(f"{v:.6g}" for v in row), str(int(t))]) for row, t in zip(x, y, strict=True)
        ]
        csv.write_text("\n".join(lines) + "\n")
        data = ingest(
            DatasetSpec.model_validate(
                {"source": {"uri": f"file://{csv}"}, "schema": {"label": "label"}}
            ),
            namespace="bench",
            name=name,
            claim="art",
            store=store,
            previous_digest=None,
        )
        result = train(
            TrainingRunSpec.model_validate(
                {"model": name, "datasetRef": {"name": name}, "estimator": estimator}
            ),
            namespace="bench",
            run=name,
            snapshot_uri=data.snapshot_uri,
            digest=data.digest,
            claim="art",
            store=store,
        )
        plain.fit(x.astype(np.float32), y)
        joblib_path = root / f"{name}.joblib"
        joblib.dump(plain, joblib_path)
        models.append(
            ModelFiles(
                name,
                store.path(result.model_uri),
                result.sha256,
                store.path(data.stats_uri),
                joblib_path,
                x.shape[1],
                x[:100].astype(np.float32),
            )
        )
    return models


def body(model: ModelFiles, rows: int) -> str:
    """An OIP v2 request with one 2-D FP32 tensor."""
    data = np.resize(model.sample, (rows, model.features)).round(4)
    tensor = {
        "name": "input-0",
        "shape": [rows, model.features],
        "datatype": "FP32",
        "data": data.reshape(-1).tolist(),
    }
    return json.dumps({"inputs": [tensor]})


def ensure_wrk() -> tuple[Path, dict[str, str]]:
    """wrk from Debian's packages, unpacked into the work directory."""
    target = WORK / "wrk"
    binary = target / "usr/bin/wrk"
    if not binary.exists():
        target.mkdir(parents=True, exist_ok=True)
        packages = ["wrk", "libluajit-5.1-2", "libluajit-5.1-common"]
        subprocess.run(
            ["apt-get", "download", *packages], cwd=target, check=True, capture_output=True
        )
        for deb in target.glob("*.deb"):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    env = {**os.environ, "LD_LIBRARY_PATH": str(target / "usr/lib/x86_64-linux-gnu")}
    return binary, env


def ensure_venv(name: str, packages: list[str]) -> Path:
    """A peer's own virtualenv (made with uv; reused while its package list is unchanged)."""
    return peer_venv.ensure_venv(WORK / "venvs" / name, packages)


def free_port() -> int:
    """A free loopback port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Running:
    """A server under test."""

    name: str
    url: str
    """Its HTTP root ("" when it speaks gRPC alone)."""
    process: subprocess.Popen[bytes]
    grpc: str = ""
    """Its gRPC address ("" when it has no gRPC server, or it did not answer)."""
    note: str = ""
    """Why it has no gRPC address although it should."""


def _wait_ready(url: str, probe: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + probe, timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"server not ready: {log.read_text()[-3000:]}")


@contextmanager
def servers(
    model: ModelFiles,
    sklearn_version: str,
    wanted: frozenset[str] = frozenset(SERVERS),
    grpc_wanted: bool = True,
) -> Iterator[list[Running]]:
    """Start the wanted servers for one model, pinned to the server core (and wait for their gRPC
    ports when `grpc_wanted`)."""
    mlserver = fastapi = Path()
    if wanted & {"mlserver-ort", "mlserver-sklearn"}:
        mlserver = ensure_venv(
            "mlserver",
            [
                "mlserver==1.7.1",
                "mlserver-sklearn==1.7.1",
                f"scikit-learn=={sklearn_version}",
                "onnxruntime",
                "uvloop<0.22",
            ],
        )
    if "fastapi-ort" in wanted:
        fastapi = ensure_venv("fastapi", ["fastapi", "uvicorn[standard]", "onnxruntime", "numpy"])
    workdir = WORK / "run" / model.name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    started: list[Running] = []
    pin = ["taskset", "-c", SERVER_CORE]

    def launch(
        name: str,
        argv: list[str],
        probe: str,
        cwd: Path = ROOT,
        env: dict[str, str] | None = None,
        port: int = 0,
        grpc_port: int = 0,
    ) -> None:
        if name not in wanted:
            return
        log = workdir / f"{name}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [*pin, *argv],
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env or dict(os.environ),
            )
        url = f"http://127.0.0.1:{port}" if port else ""
        running = Running(name, url, process)
        started.append(running)
        if port:
            _wait_ready(url, probe, process, log)
        if grpc_port:
            address = f"127.0.0.1:{grpc_port}"
            if wait_grpc(address, lambda: process.poll() is None, 60 if port else 120):
                running.grpc = address
            elif not port:
                raise SystemExit(f"{name}: no gRPC server: {log.read_text()[-3000:]}")
            else:
                running.note = f"no gRPC server answered on {address} within 60 s"

    # Our server takes --grpc-port once it has a gRPC server: always give it a free port, so two
    # instances do not both claim the default (8081). MLServer always runs its gRPC server too.
    grpc_flag = (
        "--grpc-port"
        in subprocess.run(
            [str(PYTHON), "-m", "flywheel_serving", "--help"], capture_output=True, text=True
        ).stdout
    )
    try:
        for name, extra in (
            ("flywheel", []),
            ("flywheel-nomon", ["--no-monitoring"]),
            ("flywheel-nogrpc", []),
        ):
            port = free_port()
            grpc_port = free_port() if grpc_flag and name != "flywheel-nogrpc" else 0
            if grpc_flag:
                extra = [*extra, "--grpc-port", str(grpc_port)]
            launch(
                name,
                [
                    str(PYTHON),
                    "-m",
                    "flywheel_serving",
                    "--model-uri",
                    str(model.onnx),
                    "--model-name",
                    model.name,
                    "--sha256",
                    model.sha256,
                    "--stats-uri",
                    str(model.stats),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                    *extra,
                ],
                "/v2/health/ready",
                port=port,
                grpc_port=grpc_port if grpc_wanted and name not in JSON_ONLY else 0,
            )
        port = free_port()
        launch(
            "floor", [str(PYTHON), str(ROOT / "bench/serving/floor.py"), str(port)], "/", port=port
        )
        port = free_port()
        launch(
            "floor-grpc",
            [str(PYTHON), str(ROOT / "bench/serving/floor_grpc.py"), str(port)],
            "",
            grpc_port=port,
        )
        if "echo-grpc" in wanted:
            port = free_port()
            launch("echo-grpc", [str(ensure_echo(WORK)), str(port)], "", grpc_port=port)
        app_dir = workdir / "fastapi"
        app_dir.mkdir(exist_ok=True)
        (app_dir / "app.py").write_text(FASTAPI_APP.replace("MODEL_PATH", str(model.onnx)))
        port = free_port()
        launch(
            "fastapi-ort",
            [
                str(fastapi / "bin/uvicorn"),
                "app:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--log-level",
                "warning",
            ],
            "/docs",
            cwd=app_dir,
            port=port,
        )
        for name, implementation, uri in (
            ("mlserver-ort", "ort_runtime.OrtModel", str(model.onnx)),
            ("mlserver-sklearn", "mlserver_sklearn.SKLearnModel", str(model.joblib)),
        ):
            repo = workdir / name
            (repo / model.name).mkdir(parents=True, exist_ok=True)
            port, grpc, metrics = free_port(), free_port(), free_port()
            (repo / "settings.json").write_text(
                json.dumps(
                    {
                        "debug": False,
                        "host": "127.0.0.1",
                        "http_port": port,
                        "grpc_port": grpc,
                        "metrics_port": metrics,
                        "parallel_workers": 0,
                    }
                )
            )
            (repo / model.name / "model-settings.json").write_text(
                json.dumps(
                    {
                        "name": model.name,
                        "implementation": implementation,
                        "parameters": {"uri": uri, "version": "v1"},
                    }
                )
            )
            (repo / "ort_runtime.py").write_text(MLSERVER_ORT_RUNTIME)
            env = {**os.environ, "PYTHONPATH": str(repo)}
            launch(
                name,
                [str(mlserver / "bin/mlserver"), "start", "."],
                f"/v2/models/{model.name}/ready",
                cwd=repo,
                env=env,
                port=port,
                grpc_port=grpc if grpc_wanted else 0,
            )
        yield started
    finally:
        for running in started:
            running.process.send_signal(signal.SIGINT)
        for running in started:
            try:
                running.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                running.process.kill()


def _micros(text: str) -> float:
    units = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}
    for unit in ("us", "ms", "s"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * units[unit]
    raise ValueError(text)


def wrk(
    binary: Path,
    env: dict[str, str],
    url: str,
    script: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    server_pid: int = 0,
) -> Sample:
    """Warm up, then measure; fails on any non-2xx answer or socket error (a request unanswered
    after 10 s is one; wrk's default, 2 s, failed MLServer's sklearn runtime at c=16 on a busy
    VM)."""
    head = [
        "taskset",
        "-c",
        CLIENT_CORE,
        str(binary),
        "-t1",
        f"-c{concurrency}",
        "--timeout",
        "10s",
    ]
    tail = ["-s", str(script), url]
    subprocess.run([*head, f"-d{warmup}s", *tail], env=env, check=True, capture_output=True)
    output, cpu, server, others = measured(
        [*head, f"-d{duration}s", "--latency", *tail], env, duration, server_pid
    )
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"errors against {url}:\n{output}")
    lines = {line.split()[0]: line.split() for line in output.splitlines() if line.split()}
    return Sample(
        float(lines["Requests/sec:"][1]),
        _micros(lines["50%"][1]),
        _micros(lines["99%"][1]),
        cpu,
        server,
        others,
    )


def raw_ort(model: ModelFiles, rows: int) -> Sample:
    """session.run alone, pinned to the server core, inputs pre-built."""
    import onnxruntime as ort

    os.sched_setaffinity(0, {int(SERVER_CORE)})
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(model.onnx), options, providers=["CPUExecutionProvider"])
    data = np.resize(model.sample, (rows, model.features)).round(4).astype(np.float32)
    feeds = {i.name: data[:, n : n + 1].copy() for n, i in enumerate(session.get_inputs())}
    for _ in range(300):
        session.run(None, feeds)
    timings = []
    for _ in range(5000 if rows == 1 else 2000):
        started = time.perf_counter_ns()
        session.run(None, feeds)
        timings.append((time.perf_counter_ns() - started) / 1000)
    os.sched_setaffinity(0, set(range(os.cpu_count() or 2)))
    p50, p99 = float(np.percentile(timings, 50)), float(np.percentile(timings, 99))
    return Sample(1e6 / statistics.mean(timings), p50, p99)


@dataclass(frozen=True)
class Target:
    """One row of a table: a server spoken to in one protocol."""

    label: str
    protocol: str
    server: Running


def probe_binary(url: str, body_bytes: bytes, header_length: int) -> tuple[int, str]:
    """One binary-extension request: the status, and what came back (or the error's text)."""
    request = urllib.request.Request(
        url,
        data=body_bytes,
        headers={
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(header_length),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            binary = answer.headers.get("Inference-Header-Content-Length") is not None
            answer.read()
            return answer.status, "binary outputs" if binary else "JSON outputs"
    except urllib.error.HTTPError as error:
        return error.code, " ".join(error.read().decode(errors="replace").split())[:160]


@dataclass(frozen=True)
class Plan:
    """How to measure the targets of one model and body."""

    wrk: Path
    wrk_env: dict[str, str]
    ghz: Path
    protoset: Path | None
    path: str
    scripts: dict[str, Path]
    grpc_data: Path
    duration: float
    warmup: float
    max_others: float


def measure(plan: Plan, target: Target, concurrency: int) -> tuple[Sample, int]:
    """One run of a target (measured again while the rest of the machine used more than
    `plan.max_others` cores, up to 4 times, keeping the least disturbed); and the retries."""
    best: Sample | None = None
    attempt = 0
    for attempt in range(5 if plan.max_others > 0 else 1):
        if attempt:
            time.sleep(10)
        if target.protocol == "grpc":
            assert plan.protoset is not None
            sample = ghz(
                plan.ghz,
                plan.protoset,
                target.server.grpc,
                plan.grpc_data,
                concurrency,
                plan.duration,
                plan.warmup,
                CLIENT_CORE,
                target.server.process.pid,
            )
        else:
            sample = wrk(
                plan.wrk,
                plan.wrk_env,
                target.server.url + plan.path,
                plan.scripts[target.protocol],
                concurrency,
                plan.duration,
                plan.warmup,
                target.server.process.pid,
            )
        if best is None or sample.other_cpu < best.other_cpu:
            best = sample
        if sample.other_cpu <= plan.max_others:
            break
    assert best is not None
    return best, attempt


def main() -> int:
    """Run the matrix and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 rep, 3 s runs, c=1 and 16")
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--models", default="iris-rf,lr-20")
    parser.add_argument(
        "--servers",
        default=",".join(s for s in SERVERS if s not in OPTIONAL),
        help="a subset to compare (ratios to servers left out are not printed)",
    )
    parser.add_argument(
        "--protocols",
        default=",".join(PROTOCOLS),
        help="a subset of json, binary, grpc (ratios across protocols need both in one run)",
    )
    parser.add_argument("--rows", default="1,100", help="rows per request body")
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.0,
        help="measure a run again (after 10 s, up to 4 more times; the least disturbed is kept) "
        "when the rest of the machine used more cores than this during it (0: never)",
    )
    args = parser.parse_args()
    protocols = [p for p in args.protocols.split(",") if p]
    if not set(protocols) <= set(PROTOCOLS):
        parser.error(f"--protocols: one of {', '.join(PROTOCOLS)}")
    concurrencies = [1, 16] if args.quick else [1, 4, 16]
    reps = 1 if args.quick else args.reps
    duration = 3 if args.quick else args.duration
    import sklearn

    wanted = frozenset(args.servers.split(","))
    if "grpc" not in protocols:
        wanted -= {"floor-grpc", "echo-grpc"}
    binary, env = ensure_wrk()
    ghz_binary = ensure_ghz(WORK) if "grpc" in protocols else Path()
    models = [m for m in build_models() if m.name in args.models.split(",")]
    print(f"command: {' '.join(sys.argv)}")
    clients = "wrk" + (f" and ghz {ghz_binary.parent.name}" if "grpc" in protocols else "")
    print(
        f"machine: {os.cpu_count()} cores; server on core {SERVER_CORE}, {clients} on core "
        f"{CLIENT_CORE}; {reps} reps x {duration:g} s after {args.warmup:g} s warm-up"
    )
    proto: Path | None = None
    messages: Messages | None = None
    for model in models:
        with servers(model, sklearn.__version__, wanted, "grpc" in protocols) as running:
            if "grpc" in protocols and proto is None:
                candidates = [
                    (PYTHON, "flywheel_serving.oip_grpc.grpc_predict_v2_pb2"),
                    (WORK / "venvs/mlserver/bin/python", "mlserver.grpc.dataplane_pb2"),
                ]
                proto, source = protoset(WORK, [c for c in candidates if c[0].exists()])
                messages = Messages(proto)
                print(f"gRPC service description: {source}")
            for rows in [int(r) for r in args.rows.split(",")]:
                data = np.resize(model.sample, (rows, model.features)).round(4)
                script = WORK / f"post-{model.name}-{rows}.lua"
                payload = body(model, rows)
                script.write_text(
                    'wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = [==[{payload}]==]\n"
                )
                scripts = {"json": script}
                sizes = {"json": len(payload)}
                targets: list[Target] = []
                notes: list[str] = []
                for server in running:
                    if "json" not in protocols or not server.url:
                        continue
                    request = urllib.request.Request(
                        f"{server.url}/v2/models/{model.name}/infer",
                        data=payload.encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        assert answer.status == 200, server.name
                    targets.append(Target(server.name, "json", server))
                if "binary" in protocols:
                    raw_body, header_length = binary_body(data.astype(np.float32))
                    body_file = WORK / f"post-{model.name}-{rows}.bin"
                    body_file.write_bytes(raw_body)
                    scripts["binary"] = WORK / f"post-{model.name}-{rows}-binary.lua"
                    scripts["binary"].write_text(lua_binary(body_file, header_length))
                    sizes["binary"] = len(raw_body)
                    for server in running:
                        if not server.url or server.name in JSON_ONLY:
                            continue
                        url = f"{server.url}/v2/models/{model.name}/infer"
                        status, detail = probe_binary(url, raw_body, header_length)
                        if status == 200:
                            targets.append(Target(f"{server.name}-binary", "binary", server))
                            if server.name != "floor" and detail != "binary outputs":
                                notes.append(f"{server.name}-binary: answered {detail}")
                        else:
                            notes.append(f"{server.name}-binary: n/a (HTTP {status}: {detail})")
                data_file = WORK / f"grpc-{model.name}-{rows}.json"
                if messages is not None:
                    message = grpc_request(model.name, data)
                    data_file.write_text(json.dumps(message))
                    encoded = messages.encode(message)
                    sizes["gRPC"] = len(encoded)
                    for server in running:
                        if server.name in JSON_ONLY:
                            continue
                        if server.grpc:
                            try:
                                answer = messages.decode(grpc_call(server.grpc, encoded))
                            except Exception as error:
                                raise SystemExit(f"{server.name} (gRPC): {error}") from None
                            assert answer.get("outputs") or server.name == "echo-grpc", answer
                            label = f"{server.name.removesuffix('-grpc')}-grpc"
                            targets.append(Target(label, "grpc", server))
                        elif server.note:
                            notes.append(f"{server.name}-grpc: n/a ({server.note})")
                        elif server.name != "floor":
                            notes.append(f"{server.name}-grpc: n/a (no gRPC server)")

                plan = Plan(
                    binary,
                    env,
                    ghz_binary,
                    proto,
                    f"/v2/models/{model.name}/infer",
                    scripts,
                    data_file,
                    duration,
                    args.warmup,
                    args.max_others,
                )
                retried = 0
                results: dict[tuple[str, int], list[Sample]] = {}
                for concurrency in concurrencies:
                    for rep in range(reps):
                        order = targets if rep % 2 == 0 else list(reversed(targets))
                        for target in order:
                            sample, again = measure(plan, target, concurrency)
                            retried += again
                            results.setdefault((target.label, concurrency), []).append(sample)
                raw = raw_ort(model, rows)
                labels = [t.label for t in targets]
                if retried:
                    notes.append(
                        f"{retried} runs measured again: the rest of the machine used more "
                        f"than {args.max_others:g} cores during them"
                    )
                report(model, rows, sizes, labels, concurrencies, results, raw, notes)
    return 0


def report(
    model: ModelFiles,
    rows: int,
    sizes: dict[str, int],
    labels: list[str],
    concurrencies: list[int],
    results: dict[tuple[str, int], list[Sample]],
    raw: Sample,
    notes: list[str],
) -> None:
    """One table per model and body: medians (min-max) and the ratios the issue asks for."""

    def med(name: str, c: int, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in results[(name, c)]))

    def per_cpu(name: str, c: int) -> float:
        """Requests per second of server CPU time (what a starved server would have done alone)."""
        return float(
            statistics.median(s.rps / s.server_cpu for s in results[(name, c)] if s.server_cpu)
        )

    others = "".join(f"; {kind} {size} B" for kind, size in sizes.items() if kind != "json")
    print(f"\n## {model.name}, {rows} row(s) per request ({sizes['json']} B body{others})")
    print(
        f"{'server':22} {'c':>3} {'req/s':>18} {'p50 µs':>9} {'p99 µs':>9} {'client':>6} "
        f"{'server':>6} {'others':>6} {'req/CPU-s':>9}"
    )
    for label in labels:
        for c in concurrencies:
            samples = results[(label, c)]
            rps = [s.rps for s in samples]
            print(
                f"{label:22} {c:>3} {statistics.median(rps):8.0f} "
                f"({min(rps):.0f}-{max(rps):.0f}) {med(label, c, 'p50_us'):9.0f} "
                f"{med(label, c, 'p99_us'):9.0f} {med(label, c, 'client_cpu'):6.0%} "
                f"{med(label, c, 'server_cpu'):6.0%} "
                f"{max(s.other_cpu for s in samples):6.2f} {per_cpu(label, c):9.0f}"
            )
    print(f"{'raw-ort':22} {'-':>3} {raw.rps:8.0f} {'':9} {raw.p50_us:9.1f} {raw.p99_us:9.1f}")
    top = max(concurrencies)
    names = set(labels)
    if "flywheel" in names:
        ours = med("flywheel", top, "rps")
        for peer in ("mlserver-sklearn", "mlserver-ort", "fastapi-ort"):
            if peer in names:
                print(
                    f"throughput c={top}: flywheel / {peer} = {ours / med(peer, top, 'rps'):.2f}x"
                )
        if "floor" in names:
            floor = med("floor", 1, "p50_us")
            print(
                f"p50 c=1: flywheel / floor = {med('flywheel', 1, 'p50_us') / floor:.2f}x "
                f"(additive {med('flywheel', 1, 'p50_us') - raw.p50_us:.0f} µs over raw ORT)"
            )
        for variant, what, flag in (
            ("flywheel-nogrpc", "idle gRPC port", "--grpc-port 0"),
            ("flywheel-nomon", "monitoring cost", "--no-monitoring"),
        ):
            if variant not in names:
                continue
            for c in concurrencies:
                cost = med("flywheel", c, "p50_us") / med(variant, c, "p50_us") - 1
                speed = med("flywheel", c, "rps") / med(variant, c, "rps") - 1
                print(f"{what} at c={c}: p50 {cost:+.1%}, throughput {speed:+.1%} versus {flag}")
    shown = {"flywheel": "flywheel (json)", "mlserver-ort": "mlserver-ort (json)"}
    for ours_label, theirs in (
        ("flywheel-grpc", "mlserver-ort-grpc"),
        ("flywheel-grpc", "mlserver-sklearn-grpc"),
        ("flywheel-grpc", "flywheel"),
        ("flywheel-binary", "flywheel"),
        ("mlserver-ort-grpc", "mlserver-ort"),
    ):
        if {ours_label, theirs} <= names:
            ratio = med(ours_label, top, "rps") / med(theirs, top, "rps")
            cpu = per_cpu(ours_label, top) / per_cpu(theirs, top)
            print(
                f"throughput c={top}: {ours_label} / {shown.get(theirs, theirs)} = {ratio:.2f}x "
                f"(per server CPU-second {cpu:.2f}x)"
            )
    if "echo-grpc" in names:
        print(
            f"client reach: ghz makes {med('echo-grpc', top, 'rps'):.0f} calls/s at c={top} "
            f"against echo-grpc, using {med('echo-grpc', top, 'client_cpu'):.0%} of its core"
        )
    for ours_label, floor_label in (("flywheel-grpc", "floor-grpc"), ("flywheel-binary", "floor")):
        if {ours_label, floor_label} <= names:
            ratio = med(ours_label, 1, "p50_us") / med(floor_label, 1, "p50_us")
            print(f"p50 c=1: {ours_label} / {floor_label} = {ratio:.2f}x")
    for server in ("flywheel", "mlserver-ort", "mlserver-sklearn", "floor"):
        kinds = [
            (kind, label)
            for kind, label in (
                ("json", server),
                ("binary", f"{server}-binary"),
                ("grpc", f"{server}-grpc"),
            )
            if label in names
        ]
        if len(kinds) < 2:
            continue
        parts = [
            f"c={c} "
            + ", ".join(
                f"{kind} {med(label, c, 'p50_us'):.0f}/{med(label, c, 'p99_us'):.0f}"
                for kind, label in kinds
            )
            for c in (1, top)
        ]
        print(f"latency p50/p99 µs, {server}: {'; '.join(parts)}")
    for note in notes:
        print(note)
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
