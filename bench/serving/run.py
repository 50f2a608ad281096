"""Serving benchmark: our server side by side with its peers, same machine, same model, one run.

Usage:  .venv/bin/python bench/serving/run.py [--quick] [--duration 10] [--reps 3]
        [--models iris-rf,lr-20] [--rows 1,100] [--servers flywheel,flywheel-nomon,...]

Servers (each on core 1, wrk on core 0; see docs/serving.md for the reading):
  flywheel          python -m flywheel_serving (monitoring on: the default)
  flywheel-nomon    the same with --no-monitoring (what the drift metrics cost)
  floor             our HTTP stack answering a constant (uvicorn + uvloop + httptools)
  fastapi-ort       a hand-written FastAPI + onnxruntime app (what a user would write)
  mlserver-ort      MLServer with a minimal onnxruntime runtime, parallel_workers=0
  mlserver-sklearn  MLServer's scikit-learn runtime on a joblib file (what users deploy)
  raw-ort           onnxruntime session.run in-process, no HTTP (the model's own cost)

Models: RandomForest (100 trees) on iris, LogisticRegression on 20 numeric features. Bodies:
OIP v2 JSON with 1 and 100 rows. Concurrency 1, 4, 16; 3 s warm-up, 10 s runs, 3 repetitions in
alternating server order. Peers live in their own virtualenvs under the work directory
($FLYWHEEL_BENCH_DIR, default ~/.cache/flywheel/bench-serving); wrk 4.1 comes from Debian's
packages (apt-get download, unpacked there, no system install).
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

from peer_apps import FASTAPI_APP, MLSERVER_ORT_RUNTIME

SERVERS = ("flywheel", "flywheel-nomon", "floor", "fastapi-ort", "mlserver-ort", "mlserver-sklearn")
ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("FLYWHEEL_BENCH_DIR", Path.home() / ".cache/flywheel/bench-serving"))
PYTHON = ROOT / ".venv/bin/python"
UV = ROOT / ".venv/bin/uv"
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
    venv = WORK / "venvs" / name
    stamp = venv / ".packages"
    if not stamp.exists() or stamp.read_text() != "\n".join(packages):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(UV), "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), *packages],
            check=True,
        )
        stamp.write_text("\n".join(packages))
    return venv


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
    process: subprocess.Popen[bytes]


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
    model: ModelFiles, sklearn_version: str, wanted: frozenset[str] = frozenset(SERVERS)
) -> Iterator[list[Running]]:
    """Start the wanted servers for one model, pinned to the server core."""
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
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, probe, process, log)
        started.append(Running(name, url, process))

    try:
        for name, extra in (("flywheel", []), ("flywheel-nomon", ["--no-monitoring"])):
            port = free_port()
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
            )
        port = free_port()
        launch(
            "floor", [str(PYTHON), str(ROOT / "bench/serving/floor.py"), str(port)], "/", port=port
        )
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


@dataclass(frozen=True)
class Sample:
    """One wrk run."""

    rps: float
    p50_us: float
    p99_us: float


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
) -> Sample:
    """Warm up, then measure; fails on any non-2xx answer or socket error."""
    base = [
        "taskset",
        "-c",
        CLIENT_CORE,
        str(binary),
        "-t1",
        f"-c{concurrency}",
        "-s",
        str(script),
        url,
    ]
    subprocess.run([*base[:5], f"-d{warmup}s", *base[5:]], env=env, check=True, capture_output=True)
    output = subprocess.run(
        [*base[:5], f"-d{duration}s", "--latency", *base[5:]],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise SystemExit(f"errors against {url}:\n{output}")
    lines = {line.split()[0]: line.split() for line in output.splitlines() if line.split()}
    return Sample(
        float(lines["Requests/sec:"][1]), _micros(lines["50%"][1]), _micros(lines["99%"][1])
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
        default=",".join(SERVERS),
        help="a subset to compare (ratios to servers left out are not printed)",
    )
    parser.add_argument("--rows", default="1,100", help="rows per request body")
    args = parser.parse_args()
    concurrencies = [1, 16] if args.quick else [1, 4, 16]
    reps = 1 if args.quick else args.reps
    duration = 3 if args.quick else args.duration
    import sklearn

    binary, env = ensure_wrk()
    models = [m for m in build_models() if m.name in args.models.split(",")]
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"machine: {os.cpu_count()} cores; server on core {SERVER_CORE}, wrk on core "
        f"{CLIENT_CORE}; {reps} reps x {duration:g} s after {args.warmup:g} s warm-up"
    )
    for model in models:
        wanted = frozenset(args.servers.split(","))
        with servers(model, sklearn.__version__, wanted) as running:
            for rows in [int(r) for r in args.rows.split(",")]:
                script = WORK / f"post-{model.name}-{rows}.lua"
                payload = body(model, rows)
                script.write_text(
                    'wrk.method = "POST"\n'
                    'wrk.headers["Content-Type"] = "application/json"\n'
                    f"wrk.body = [==[{payload}]==]\n"
                )
                for server in running:
                    request = urllib.request.Request(
                        f"{server.url}/v2/models/{model.name}/infer",
                        data=payload.encode(),
                        headers={"Content-Type": "application/json"},
                    )
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        assert answer.status == 200, server.name
                results: dict[tuple[str, int], list[Sample]] = {}
                for concurrency in concurrencies:
                    for rep in range(reps):
                        order = running if rep % 2 == 0 else list(reversed(running))
                        for server in order:
                            url = f"{server.url}/v2/models/{model.name}/infer"
                            sample = wrk(
                                binary, env, url, script, concurrency, duration, args.warmup
                            )
                            results.setdefault((server.name, concurrency), []).append(sample)
                raw = raw_ort(model, rows)
                report(model, rows, len(payload), running, concurrencies, results, raw)
    return 0


def report(
    model: ModelFiles,
    rows: int,
    size: int,
    running: list[Running],
    concurrencies: list[int],
    results: dict[tuple[str, int], list[Sample]],
    raw: Sample,
) -> None:
    """One table per model and body: medians (min-max) and the ratios the issue asks for."""

    def med(name: str, c: int, field: str) -> float:
        return float(statistics.median(getattr(s, field) for s in results[(name, c)]))

    print(f"\n## {model.name}, {rows} row(s) per request ({size} B body)")
    print(f"{'server':18} {'c':>3} {'req/s':>18} {'p50 µs':>9} {'p99 µs':>9}")
    for server in running:
        for c in concurrencies:
            samples = results[(server.name, c)]
            rps = [s.rps for s in samples]
            print(
                f"{server.name:18} {c:>3} {statistics.median(rps):8.0f} "
                f"({min(rps):.0f}-{max(rps):.0f}) {med(server.name, c, 'p50_us'):9.0f} "
                f"{med(server.name, c, 'p99_us'):9.0f}"
            )
    print(f"{'raw-ort':18} {'-':>3} {raw.rps:8.0f} {'':9} {raw.p50_us:9.1f} {raw.p99_us:9.1f}")
    top = max(concurrencies)
    names = {server.name for server in running}
    if "flywheel" not in names:
        return
    ours = med("flywheel", top, "rps")
    for peer in ("mlserver-sklearn", "mlserver-ort", "fastapi-ort"):
        if peer in names:
            print(f"throughput c={top}: flywheel / {peer} = {ours / med(peer, top, 'rps'):.2f}x")
    if "floor" in names:
        floor = med("floor", 1, "p50_us")
        print(
            f"p50 c=1: flywheel / floor = {med('flywheel', 1, 'p50_us') / floor:.2f}x "
            f"(additive {med('flywheel', 1, 'p50_us') - raw.p50_us:.0f} µs over raw ORT)"
        )
    if "flywheel-nomon" in names:
        for c in concurrencies:
            cost = med("flywheel", c, "p50_us") / med("flywheel-nomon", c, "p50_us") - 1
            speed = med("flywheel", c, "rps") / med("flywheel-nomon", c, "rps") - 1
            print(
                f"monitoring cost at c={c}: p50 {cost:+.1%}, throughput {speed:+.1%} "
                "versus --no-monitoring"
            )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
