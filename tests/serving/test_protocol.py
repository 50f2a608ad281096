"""The Open Inference Protocol v2 over real HTTP: every endpoint, every malformed request."""

from __future__ import annotations

import json
import signal
import threading
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from tests.serving.conftest import Artifacts, Server, ServerFactory

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5]]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _matrix(rows: list[list[float]], **extra: Any) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
    return {"inputs": [tensor], **extra}


def _reference(iris: Artifacts, rows: list[list[float]]) -> tuple[list[str], np.ndarray[Any, Any]]:
    """onnxruntime on the same file, directly."""
    path = iris.root / iris.model_uri.removeprefix("pvc://")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        i.name: np.array([[r[n]] for r in rows], dtype=np.float32)
        for n, i in enumerate(session.get_inputs())
    }
    labels, probabilities = session.run(None, feeds)
    return [str(v) for v in labels], np.asarray(probabilities)


def test_health_metadata_and_openapi(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris")
    with server.client() as http:
        assert http.get("/v2/health/live").json() == {"live": True}
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get("/v2").json()["extensions"] == ["binary_tensor_data", "feedback"]
        for prefix in ("/v2/models/iris", "/v2/models/iris/versions/3"):
            metadata = http.get(prefix).json()
            assert metadata["name"] == "iris"
            assert metadata["versions"] == ["3"]
            assert [i["name"] for i in metadata["inputs"]] == FEATURES
            assert [o["name"] for o in metadata["outputs"]] == ["label", "probabilities"]
            assert metadata["outputs"][1]["shape"] == [-1, 3]
            assert http.get(f"{prefix}/ready").json() == {"name": "iris", "ready": True}
            assert http.get(f"{prefix}/baseline").json() == iris.stats
        document = http.get("/v2/openapi.json").json()
        assert document["openapi"].startswith("3.")
        assert "/v2/models/{model_name}/versions/{model_version}/infer" in document["paths"]
        assert http.get("/openapi.json").json() == document


def test_inference_in_every_accepted_form(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris")
    labels, probabilities = _reference(iris, ROWS)
    with server.client() as http:
        whole = http.post(
            "/v2/models/iris/infer", json=_matrix(ROWS, id="req-7", parameters={"a": 1})
        )
        assert whole.status_code == 200
        body = whole.json()
        assert (body["id"], body["model_name"], body["model_version"]) == ("req-7", "iris", "3")
        assert body["parameters"] == {"a": 1}
        label, proba = body["outputs"]
        assert (label["name"], label["datatype"], label["shape"]) == ("label", "BYTES", [3])
        assert label["data"] == labels
        assert proba["shape"] == [3, 3]
        np.testing.assert_allclose(np.array(proba["data"]).reshape(3, 3), probabilities, rtol=1e-6)

        per_feature = {
            "inputs": [
                {"name": n, "shape": [3, 1], "datatype": "FP64", "data": [r[i] for r in ROWS]}
                for i, n in enumerate(FEATURES)
            ],
            "outputs": [{"name": "label"}],
        }
        only_labels = http.post("/v2/models/iris/versions/3/infer", json=per_feature).json()
        assert [o["name"] for o in only_labels["outputs"]] == ["label"]
        assert only_labels["outputs"][0]["data"] == labels
        flat = _matrix(ROWS)
        flat["inputs"][0]["data"] = [v for r in ROWS for v in r]
        assert http.post("/v2/models/iris/infer", json=flat).json()["outputs"][0]["data"] == labels
        v1 = http.post("/v1/models/iris:predict", json={"instances": ROWS})
        assert v1.json() == {"predictions": labels}
        keyed = [dict(zip(FEATURES, r, strict=True)) for r in ROWS]
        assert http.post("/v1/models/iris:predict", json={"instances": keyed}).json() == {
            "predictions": labels
        }


MALFORMED: list[tuple[str, Any, int, str]] = [
    ("not JSON", b"{nope", 400, "not valid JSON"),
    (
        "a NaN literal",
        b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [NaN, 1, 2, 3]}]}',
        400,
        "not valid JSON",
    ),
    ("not an object", [1, 2], 400, "JSON object"),
    ("no inputs", {"id": "x"}, 400, "`inputs`"),
    (
        "a bad shape",
        _matrix(ROWS)
        | {"inputs": [{"name": "x", "shape": [3, 4, 1], "datatype": "FP32", "data": ROWS}]},
        400,
        "shape",
    ),
    (
        "a bad datatype",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP8", "data": [1, 2, 3, 4]}]},
        400,
        "datatype",
    ),
    (
        "text as numbers",
        {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP32", "data": ["a", "b", "c", "d"]}
            ]
        },
        400,
        "numbers",
    ),
    (
        "too few values",
        {"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]},
        400,
        "do not fill shape",
    ),
    (
        "ragged rows",
        {
            "inputs": [
                {"name": "x", "shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], [1, 2]]}
            ]
        },
        400,
        "nested data must match shape",
    ),
    (
        "no rows",
        {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]},
        400,
        "no values",
    ),
    (
        "a wrong column count",
        {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]},
        422,
        "takes 4 features",
    ),
    (
        "a missing value",
        {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, None, 3, 4]}]},
        422,
        "missing",
    ),
    (
        "an unknown feature",
        {
            "inputs": [
                {"name": n, "shape": [1], "datatype": "FP32", "data": [1]}
                for n in [*FEATURES[:3], "colour"]
            ]
        },
        422,
        "colour",
    ),
    (
        "a missing feature",
        {
            "inputs": [
                {"name": n, "shape": [1], "datatype": "FP32", "data": [1]} for n in FEATURES[:3]
            ]
        },
        422,
        "petal width",
    ),
    (
        "disagreeing rows",
        {
            "inputs": [
                {
                    "name": n,
                    "shape": [1 + (n == FEATURES[0])],
                    "datatype": "FP32",
                    "data": [1] * (1 + (n == FEATURES[0])),
                }
                for n in FEATURES
            ]
        },
        400,
        "number of rows",
    ),
    ("an unknown output", _matrix(ROWS, outputs=[{"name": "logits"}]), 400, "logits"),
    ("a non-string id", _matrix(ROWS, id=7), 400, "`id`"),
]


@pytest.mark.parametrize(
    ("case", "body", "status", "fragment"), MALFORMED, ids=[m[0] for m in MALFORMED]
)
def test_malformed_requests_get_their_4xx(
    serve: ServerFactory, iris: Artifacts, case: str, body: Any, status: int, fragment: str
) -> None:
    server = serve(iris, "iris")
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with server.client() as http:
        answer = http.post("/v2/models/iris/infer", content=content)
        assert answer.status_code == status, answer.text
        assert answer.headers["content-type"] == "application/json"
        assert fragment in answer.json()["error"]
        assert http.get("/v2/health/ready").status_code == 200, "still serving"


def test_routing_errors_and_limits(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", max_body_bytes=2000)
    with server.client() as http:
        for path, status in (
            ("/v2/models/nope/infer", 404),
            ("/v2/models/iris/versions/9/infer", 404),
            ("/v2/models/iris/explain", 404),
            ("/nowhere", 404),
            ("/v1/models/nope:predict", 404),
        ):
            answer = http.post(path, json=_matrix(ROWS))
            assert answer.status_code == status, path
            assert "error" in answer.json()
        assert http.get("/v2/models/iris/infer").status_code == 405
        huge = _matrix([[5.0, 3.0, 1.0, 0.2]] * 200)
        too_large = http.post("/v2/models/iris/infer", json=huge)
        assert too_large.status_code == 413
        assert "2000 bytes" in too_large.json()["error"]
        assert http.post("/v1/models/iris:predict", json={"rows": []}).status_code == 400
        feedback = http.post("/v2/models/iris/feedback", json={"prediction": "0"})
        assert feedback.status_code == 422


def _logged(server: Server, text: str) -> None:
    """Wait (up to 2 s) until the server has logged `text`: its model load is over."""
    for _ in range(20):
        if text in server.output():
            return
        threading.Event().wait(0.1)


def test_a_digest_mismatch_is_never_ready(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", wait_ready=False, sha256="0" * 64)
    with server.client() as http:
        _logged(server, "ArtifactDigestMismatch")
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "ArtifactDigestMismatch" in ready.json()["error"]
        assert http.get("/v2/models/iris/ready").status_code == 503
        assert http.post("/v2/models/iris/infer", json=_matrix(ROWS)).status_code == 503
        assert http.get("/v2/health/live").status_code == 200, "alive: the log says why"
        metrics = http.get("/metrics").text
        assert 'flywheel_model_ready{model="iris",version="3"} 0.0' in metrics
    assert "refusing to serve it" in server.output()
    unverified = serve(iris, "iris", wait_ready=False, sha256="")
    with unverified.client() as http:
        _logged(unverified, "unverified")
        assert "refusing to serve an unverified model" in http.get("/v2/health/ready").text
    missing = serve(iris, "iris", wait_ready=False, model_uri="pvc://art/models/none.onnx")
    with missing.client() as http:
        _logged(missing, "ModelLoadFailed")
        assert "ModelLoadFailed" in http.get("/v2/health/ready").json()["error"]


def test_adaptive_batching_merges_concurrent_requests(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris", max_batch_size=16, max_latency_ms=20)
    labels, _ = _reference(iris, ROWS)
    answers: list[list[str]] = []

    def one(row: int) -> None:
        with server.client() as http:
            body = http.post("/v2/models/iris/infer", json=_matrix([ROWS[row % 3]])).json()
            answers.append([row % 3, body["outputs"][0]["data"][0]])  # type: ignore[list-item]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 12
    assert all(label == labels[int(row)] for row, label in answers), "each got its own row"
    with server.client() as http:
        metrics = http.get("/metrics").text
    merged = [
        line
        for line in metrics.splitlines()
        if line.startswith('flywheel_batch_size_bucket{le="1.0"')
    ]
    count = [line for line in metrics.splitlines() if line.startswith("flywheel_batch_size_count")]
    assert float(merged[0].split()[-1]) < 12, "some session runs held several requests"
    assert float(count[0].split()[-1]) < 12


def test_shutdown_drains_in_flight_requests(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", max_body_bytes=64_000_000)
    big = _matrix([[5.0 + i % 7 * 0.1, 3.0, 1.0, 0.2] for i in range(200_000)])
    result: dict[str, Any] = {}

    def slow() -> None:
        with server.client() as http:
            answer = http.post("/v2/models/iris/infer", json=big)
            result["status"] = answer.status_code
            result["rows"] = answer.json()["outputs"][0]["shape"][0]

    thread = threading.Thread(target=slow)
    thread.start()
    threading.Event().wait(0.3)  # the request is being read or computed
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=60)
    assert result == {"status": 200, "rows": 200_000}
    # uvicorn re-raises the signal once it has drained: the conventional "killed by SIGTERM".
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()


def test_stop_signal_turns_unready_but_keeps_answering_for_the_shutdown_delay(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris", shutdown_delay_seconds=2)
    request = _matrix([[5.1, 3.5, 1.4, 0.2]])
    server.process.send_signal(signal.SIGTERM)
    threading.Event().wait(0.2)
    with server.client() as http:
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503
        assert "ShuttingDown" in ready.json()["error"]
        # A load balancer that has not yet seen the pod leave still gets answers, told to
        # reconnect elsewhere.
        answer = http.post("/v2/models/iris/infer", json=request)
        assert answer.status_code == 200
        assert answer.headers["connection"] == "close"
    assert server.process.poll() is None, "still listening during the delay"
    assert server.process.wait(timeout=15) in (0, -signal.SIGTERM)
    assert "closing in 2.0 s" in server.output()


def test_baseline_is_a_404_without_monitoring(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", no_monitoring=True)
    with server.client() as http:
        answer = http.get("/v2/models/iris/baseline")
        assert answer.status_code == 404
        assert "monitoring is off" in answer.json()["error"]


def test_the_in_flight_gauge_does_not_count_the_scrape(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    with server.client() as http:
        for _ in range(3):
            text = http.get("/metrics").text
            gauge = [
                line for line in text.splitlines() if line.startswith("flywheel_in_flight_requests")
            ]
            assert gauge, text[:500]
            assert all(float(line.rsplit(" ", 1)[1]) == 0 for line in gauge), gauge
