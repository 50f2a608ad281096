"""The gRPC Open Inference Protocol v2 (`inference.GRPCInferenceService`) of real servers.

tritonclient's gRPC client on its defaults (numpy tensors as `raw_input_contents`, outputs read
from `raw_output_contents`) and hand-built requests with typed `contents` must get what the REST
API answers for the same rows: the same values, the same errors with the same messages, the same
readiness, counted in the same metrics.

The hand-built requests use tritonclient's messages (Triton's superset of the same `inference`
package): this server's generated messages register that package in protobuf's default
descriptor pool too, and one process cannot hold both, so they are used in a child process
(the in-process servicer test).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as triton  # type: ignore[import-untyped]
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from tests.serving.conftest import Artifacts, Server, ServerFactory
from tests.serving.test_protocol import FEATURES, ROWS
from tests.support.ports import free_port

IRIS_ROWS = [*ROWS, [4.9, 2.5, 4.5, 1.7], [7.7, 2.6, 6.9, 2.3]]
CITIES = ["city0", "city3", "cité", "city29", "city12"]
SPEND = [10.0, 80.0, 50.0, 49.5, 51.25]
Infer = Callable[[Any], Any]
"""ModelInfer: a ModelInferRequest in, a ModelInferResponse out."""


@pytest.fixture
def triton_client() -> Iterator[Callable[[Server], Any]]:
    """tritonclient.grpc clients of servers, closed afterwards."""
    clients: list[Any] = []

    def connect(server: Server) -> Any:
        client = triton.InferenceServerClient(url=server.grpc_target)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def stub() -> Iterator[Callable[[Server], Infer]]:
    """ModelInfer over a plain channel, with this server's own generated messages."""
    channels: list[Any] = []

    def connect(server: Server) -> Infer:
        channel = grpc.insecure_channel(server.grpc_target)
        channels.append(channel)
        call: Infer = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        return call

    yield connect
    for channel in channels:
        channel.close()


def _rest(server: Server, model: str, tensors: list[dict[str, Any]], **extra: Any) -> Any:
    with server.client() as http:
        return http.post(f"/v2/models/{model}/infer", json={"inputs": tensors, **extra})


def _rest_outputs(server: Server, model: str, tensors: list[dict[str, Any]]) -> dict[str, Any]:
    answer = _rest(server, model, tensors)
    assert answer.status_code == 200, answer.text
    return {o["name"]: o["data"] for o in answer.json()["outputs"]}


def _triton_input(name: str, datatype: str, values: np.ndarray[Any, Any]) -> Any:
    given = triton.InferInput(name, list(values.shape), datatype)
    given.set_data_from_numpy(values)  # the default: raw_input_contents
    return given


def _decoded(result: Any) -> dict[str, list[Any]]:
    """Every output of a tritonclient result, flat, BYTES as str."""
    names = [o.name for o in result.get_response().outputs]
    return {
        name: [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy(name).ravel()]
        for name in names
    }


def _same(got: dict[str, list[Any]], rest: dict[str, Any]) -> None:
    assert set(got) == set(rest)
    for name, values in rest.items():
        if values and isinstance(values[0], str):
            assert got[name] == values, name
        else:  # float32 both ways: JSON writes the shortest text that reads back the same
            np.testing.assert_array_equal(
                np.asarray(got[name], dtype=np.float32), np.asarray(values, dtype=np.float32)
            )


def _rejected(call: Callable[[], Any]) -> tuple[str, str]:
    """(gRPC status, details) of a call tritonclient raises for."""
    with pytest.raises(InferenceServerException) as raised:
        call()
    return raised.value.status(), raised.value.message()


def _stub_rejected(call: Callable[[], Any]) -> tuple[Any, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    error: Any = raised.value
    return error.code(), error.details()


def _scrape(server: Server) -> list[tuple[str, dict[str, str], float]]:
    with server.client() as http:
        text = http.get("/metrics").text
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


# --- health and metadata -----------------------------------------------------------------------


def test_health_and_metadata_are_the_rest_answers(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(iris, "iris")
    client = triton_client(server)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("iris")
    assert client.is_model_ready("iris", "3")
    with server.client() as http:
        assert client.get_server_metadata(as_json=True) == http.get("/v2").json()
        rest = http.get("/v2/models/iris").json()
        missing = http.get("/v2/models/nope").json()["error"]
        other_version = http.get("/v2/models/iris/versions/9").json()["error"]
    for version in ("", "3"):
        metadata = client.get_model_metadata("iris", version, as_json=True)
        assert metadata["name"] == "iris"
        assert metadata["versions"] == ["3"]
        assert metadata["platform"] == "onnxruntime_onnx"
        for key in ("inputs", "outputs"):
            # MessageToJson writes int64 as text; the message has no `parameters` field.
            shapes = [[int(d) for d in t["shape"]] for t in metadata[key]]
            assert shapes == [t["shape"] for t in rest[key]]
            assert [(t["name"], t["datatype"]) for t in metadata[key]] == [
                (t["name"], t["datatype"]) for t in rest[key]
            ]
    assert [t["name"] for t in rest["inputs"]] == FEATURES
    not_found = "StatusCode.NOT_FOUND"
    assert _rejected(lambda: client.get_model_metadata("nope")) == (not_found, missing)
    assert _rejected(lambda: client.get_model_metadata("iris", "9")) == (not_found, other_version)
    assert _rejected(lambda: client.is_model_ready("nope")) == (not_found, missing)


# --- inference ---------------------------------------------------------------------------------


def test_iris_on_tritonclients_defaults_equals_rest(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(iris, "iris")
    client = triton_client(server)
    rows = np.array(IRIS_ROWS, dtype=np.float32)
    rest = _rest_outputs(
        server, "iris", [{"name": "x", "datatype": "FP32", "shape": [5, 4], "data": IRIS_ROWS}]
    )
    result = client.infer("iris", [_triton_input("x", "FP32", rows)], request_id="r-7")
    response = result.get_response()
    assert (response.id, response.model_name, response.model_version) == ("r-7", "iris", "3")
    assert len(response.raw_output_contents) == 2, "raw in, raw out"
    assert [list(o.shape) for o in response.outputs] == [[5], [5, 3]]
    _same(_decoded(result), rest)

    # One tensor per feature, FP64, [rows] and [rows, 1]; and one requested output.
    for shape in ((5,), (5, 1)):
        columns = [
            _triton_input(n, "FP64", rows[:, i].astype(np.float64).reshape(shape))
            for i, n in enumerate(FEATURES)
        ]
        wanted = [triton.InferRequestedOutput("probabilities")]
        result = client.infer("iris", columns, model_version="3", outputs=wanted)
        assert [o.name for o in result.get_response().outputs] == ["probabilities"]
        _same(_decoded(result), {"probabilities": rest["probabilities"]})


def test_a_categorical_model_on_tritonclients_defaults_equals_rest(
    serve: ServerFactory, shops: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(shops, "shops")
    client = triton_client(server)
    rest = _rest_outputs(
        server,
        "shops",
        [
            {"name": "city", "datatype": "BYTES", "shape": [5, 1], "data": CITIES},
            {"name": "spend", "datatype": "FP32", "shape": [5, 1], "data": SPEND},
        ],
    )
    cities = np.array(CITIES, dtype=object).reshape(5, 1)
    spend = np.array(SPEND, dtype=np.float32).reshape(5, 1)
    result = client.infer(
        "shops", [_triton_input("city", "BYTES", cities), _triton_input("spend", "FP32", spend)]
    )
    _same(_decoded(result), rest)
    # One BYTES matrix in card order: numbers as text.
    matrix = np.array([[c, str(s)] for c, s in zip(CITIES, SPEND, strict=True)], dtype=object)
    result = client.infer("shops", [_triton_input("x", "BYTES", matrix)])
    _same(_decoded(result), rest)


def test_a_regressor_on_tritonclients_defaults_equals_rest(
    serve: ServerFactory, diabetes: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(diabetes, "diabetes")
    client = triton_client(server)
    from sklearn.datasets import load_diabetes

    rows = load_diabetes().data[:6].astype(np.float32)
    tensor = {"name": "x", "datatype": "FP32", "shape": [6, 10], "data": rows.tolist()}
    rest = _rest_outputs(server, "diabetes", [tensor])
    result = client.infer("diabetes", [_triton_input("x", "FP32", rows)])
    assert [list(o.shape) for o in result.get_response().outputs] == [[6, 1]]
    _same(_decoded(result), rest)


def test_typed_contents_in_get_typed_contents_out(
    serve: ServerFactory,
    iris: Artifacts,
    shops: Artifacts,
    stub: Callable[[Server], Infer],
) -> None:
    server = serve(iris, "iris")
    infer = stub(server)
    flat = [v for r in IRIS_ROWS for v in r]
    rest = _rest_outputs(
        server, "iris", [{"name": "x", "datatype": "FP32", "shape": [5, 4], "data": IRIS_ROWS}]
    )
    request = pb.ModelInferRequest(model_name="iris", id="t-1")
    request.inputs.add(name="x", datatype="FP32", shape=[5, 4]).contents.fp32_contents.extend(flat)
    response = infer(request)
    assert response.id == "t-1"
    assert not response.raw_output_contents
    label, probabilities = response.outputs
    assert (label.datatype, list(label.shape)) == ("BYTES", [5])
    assert [v.decode() for v in label.contents.bytes_contents] == rest["label"]
    np.testing.assert_array_equal(
        np.float32(probabilities.contents.fp32_contents), np.float32(rest["probabilities"])
    )
    # Integers in int64_contents; request parameters come back.
    request = pb.ModelInferRequest(model_name="iris")
    request.parameters["note"].string_param = "kept"
    request.inputs.add(name="x", datatype="INT64", shape=[1, 4]).contents.int64_contents.extend(
        [5, 3, 1, 0]
    )
    response = infer(request)
    assert response.parameters["note"].string_param == "kept"
    assert len(response.outputs[0].contents.bytes_contents) == 1

    shops_server = serve(shops, "shops")
    request = pb.ModelInferRequest(model_name="shops")
    city = request.inputs.add(name="city", datatype="BYTES", shape=[5])
    city.contents.bytes_contents.extend(c.encode() for c in CITIES)
    request.inputs.add(name="spend", datatype="FP32", shape=[5]).contents.fp32_contents.extend(
        SPEND
    )
    response = stub(shops_server)(request)
    rest = _rest_outputs(
        shops_server,
        "shops",
        [
            {"name": "city", "datatype": "BYTES", "shape": [5], "data": CITIES},
            {"name": "spend", "datatype": "FP32", "shape": [5], "data": SPEND},
        ],
    )
    assert [v.decode() for v in response.outputs[0].contents.bytes_contents] == rest["label"]
    np.testing.assert_array_equal(
        np.float32(response.outputs[1].contents.fp32_contents), np.float32(rest["probabilities"])
    )


# --- errors ------------------------------------------------------------------------------------


def test_errors_carry_the_rest_message_and_the_server_keeps_serving(
    serve: ServerFactory,
    iris: Artifacts,
    triton_client: Callable[[Server], Any],
    stub: Callable[[Server], Infer],
) -> None:
    server = serve(iris, "iris")
    client = triton_client(server)
    infer = stub(server)
    good = np.array(ROWS, dtype=np.float32)
    invalid = "StatusCode.INVALID_ARGUMENT"

    def rest_error(tensors: list[dict[str, Any]], model: str = "iris", **extra: Any) -> str:
        answer = _rest(server, model, tensors, **extra)
        assert 400 <= answer.status_code < 500
        message: str = answer.json()["error"]
        return message

    # Another model: NOT_FOUND, REST's 404 message.
    x = {"name": "x", "datatype": "FP32", "shape": [3, 4], "data": ROWS}
    assert _rejected(lambda: client.infer("other", [_triton_input("x", "FP32", good)])) == (
        "StatusCode.NOT_FOUND",
        rest_error([x], model="other"),
    )
    # A datatype the protocol does not have.
    request = pb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * 12])
    request.inputs.add(name="x", datatype="FP8", shape=[3, 4])
    assert _stub_rejected(lambda: infer(request)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        rest_error([{**x, "datatype": "FP8"}]),
    )
    # A shape the model cannot take (3 columns): REST's 422, INVALID_ARGUMENT here.
    narrow = good[:, :3].copy()
    assert _rejected(lambda: client.infer("iris", [_triton_input("x", "FP32", narrow)])) == (
        invalid,
        rest_error([{**x, "shape": [3, 3], "data": narrow.tolist()}]),
    )
    # A value beyond float32, named by input and feature.
    huge = good.astype(np.float64)
    huge[1, 2] = 1e39
    status, message = _rejected(lambda: client.infer("iris", [_triton_input("x", "FP64", huge)]))
    assert status == invalid
    assert message == rest_error([{**x, "datatype": "FP64", "data": huge.tolist()}])
    assert message.startswith("input x: feature petal length (cm) has the value ")
    assert "1e+39" in message
    # An output the model does not have.
    wanted = [triton.InferRequestedOutput("score")]
    assert _rejected(
        lambda: client.infer("iris", [_triton_input("x", "FP32", good)], outputs=wanted)
    ) == (invalid, rest_error([x], outputs=[{"name": "score"}]))

    def typed(
        datatype: str = "FP32", field: str = "fp32_contents", values: tuple[int, ...] = (1, 2, 3, 4)
    ) -> Any:
        request = pb.ModelInferRequest(model_name="iris")
        tensor = request.inputs.add(name="x", datatype=datatype, shape=[1, 4])
        getattr(tensor.contents, field).extend(values)
        return request

    # Raw and typed contents in one request.
    mixed = typed()
    mixed.raw_input_contents.append(good[:1].tobytes())
    code, details = _stub_rejected(lambda: infer(mixed))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "either in raw_input_contents or in each input's contents" in details
    # Contents in another datatype's field; FP16 (raw only); no data at all.
    assert _stub_rejected(lambda: infer(typed(field="int_contents"))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input x: FP32 data goes in contents.fp32_contents, not int_contents",
    )
    code, details = _stub_rejected(lambda: infer(typed("FP16")))
    assert (code, details.split(":")[0]) == (grpc.StatusCode.INVALID_ARGUMENT, "input x")
    assert "FP16 data must be sent in raw_input_contents" in details
    empty = pb.ModelInferRequest(model_name="iris")
    empty.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    assert _stub_rejected(lambda: infer(empty))[0] == grpc.StatusCode.INVALID_ARGUMENT
    # Out of range for the datatype; raw bytes that do not fill the shape.
    assert _stub_rejected(lambda: infer(typed("INT8", "int_contents", (1, 2, 300, 4)))) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input x: a value is beyond the range of INT8",
    )
    short = pb.ModelInferRequest(model_name="iris", raw_input_contents=[b"\0" * 8])
    short.inputs.add(name="x", datatype="FP32", shape=[1, 4])
    assert _stub_rejected(lambda: infer(short)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "input x: 8 bytes of binary data, shape [1, 4] of FP32 takes 16",
    )

    result = client.infer("iris", [_triton_input("x", "FP32", good)])
    assert len(_decoded(result)["label"]) == 3, "still serving"


def test_a_message_over_the_body_limit_is_resource_exhausted(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(iris, "iris", max_body_bytes=4096)
    client = triton_client(server)
    rows = np.ones((400, 4), dtype=np.float32)  # 6.4 kB of raw contents
    status, _ = _rejected(lambda: client.infer("iris", [_triton_input("x", "FP32", rows)]))
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    result = client.infer("iris", [_triton_input("x", "FP32", rows[:10])])
    assert len(_decoded(result)["label"]) == 10


INTERNAL_PROBE = """
import asyncio, json, logging, sys
from pathlib import Path

import grpc

from flywheel_serving.app import ServingApp
from flywheel_serving.config import ServingConfig
from flywheel_serving.oip_grpc import grpc_predict_v2_pb2 as pb, servicer


async def main(model_uri, sha256, root, port):
    logging.basicConfig(level="INFO")
    config = ServingConfig(
        model_uri=model_uri, model_name="iris", sha256=sha256, artifacts_root=Path(root),
        host="127.0.0.1", grpc_port=int(port),
    )
    app = ServingApp(config)
    await app.start()
    await app.wait_loaded()
    server = await servicer.start(app)
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 4])
    tensor.contents.fp32_contents.extend([5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])
    predict = app.predict

    async def broken(*args):
        raise RuntimeError("a bug")

    answers = []
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        for patched in (None, broken, predict):
            if patched is not None:
                app.predict = patched
            try:
                response = await call(request)
            except grpc.aio.AioRpcError as error:
                answers.append([error.code().name, error.details()])
            else:
                labels = [v.decode() for v in response.outputs[0].contents.bytes_contents]
                answers.append([len(response.raw_output_contents), labels])
    await server.stop(None)
    requests = {f"{e} {c}": n for (e, c), n in app.metrics.requests.items()}
    in_flight = app.metrics.in_flight
    print(json.dumps({"answers": answers, "requests": requests, "in_flight": in_flight}))


asyncio.run(main(*sys.argv[1:]))
"""


def test_the_servicer_in_process_internal_errors_and_its_own_messages(
    iris: Artifacts, tmp_path: Any
) -> None:
    """This server's own generated messages as the client's; a bug in the runtime is INTERNAL,
    logged, and the next call is answered."""
    argv = [iris.model_uri, iris.sha256, str(iris.root), str(free_port())]
    done = subprocess.run(
        [sys.executable, "-c", INTERNAL_PROBE, *argv], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout)
    typed, internal, again = found["answers"]
    assert typed[0] == 0, "typed contents in, typed contents out"
    assert len(typed[1]) == 2
    assert internal == ["INTERNAL", "internal error: a bug"]
    assert again == typed
    assert "internal error on gRPC grpc_infer" in done.stderr
    assert "RuntimeError: a bug" in done.stderr
    assert found["requests"] == {"grpc_infer 200": 2, "grpc_infer 500": 1}
    assert found["in_flight"] == 0


# --- readiness, lifecycle, metrics -------------------------------------------------------------


def test_draining_reports_not_ready_and_still_answers(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(iris, "iris", shutdown_delay_seconds=3)
    client = triton_client(server)
    assert client.is_server_ready()
    server.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 2
    while client.is_server_ready() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not client.is_server_ready()
    assert not client.is_model_ready("iris")
    assert client.is_server_live()
    result = client.infer("iris", [_triton_input("x", "FP32", np.array(ROWS, np.float32))])
    assert len(_decoded(result)["label"]) == 3
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "gRPC inference.GRPCInferenceService listening on 127.0.0.1:" in server.output()


def test_shutdown_drains_in_flight_calls(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    # Batching holds a lone row for 2 s: the call is in flight when the signal comes.
    server = serve(iris, "iris", max_batch_size=64, max_latency_ms=2000)
    client = triton_client(server)
    result: dict[str, Any] = {}

    def call() -> None:
        answer = client.infer("iris", [_triton_input("x", "FP32", np.array(ROWS[:1], np.float32))])
        result["label"] = _decoded(answer)["label"]

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    thread.join(timeout=30)
    assert len(result["label"]) == 1
    assert server.process.wait(timeout=30) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()


def test_grpc_and_rest_requests_share_the_batcher(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    # Two rows fill a batch; either request alone would wait 10 s.
    server = serve(iris, "iris", max_batch_size=2, max_latency_ms=10_000)
    client = triton_client(server)
    started = time.monotonic()
    result: dict[str, Any] = {}

    def call() -> None:
        answer = client.infer("iris", [_triton_input("x", "FP32", np.array(ROWS[:1], np.float32))])
        result["grpc"] = _decoded(answer)["label"]

    thread = threading.Thread(target=call)
    thread.start()
    x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": ROWS[1]}
    assert len(_rest_outputs(server, "iris", [x])["label"]) == 1
    thread.join(timeout=30)
    assert len(result["grpc"]) == 1
    assert time.monotonic() - started < 8
    batches = {n: v for n, _, v in _scrape(server) if n.startswith("flywheel_batch_size_")}
    assert (batches["flywheel_batch_size_count"], batches["flywheel_batch_size_sum"]) == (1, 2)


def test_grpc_requests_count_in_the_metrics_and_the_monitor(
    serve: ServerFactory, iris: Artifacts, triton_client: Callable[[Server], Any]
) -> None:
    server = serve(iris, "iris")
    client = triton_client(server)
    rows = np.array(IRIS_ROWS, dtype=np.float32)
    for _ in range(3):
        client.infer("iris", [_triton_input("x", "FP32", rows)])
    client.is_server_ready()
    client.get_model_metadata("iris")
    _rejected(lambda: client.infer("other", [_triton_input("x", "FP32", rows)]))
    _rejected(lambda: client.infer("iris", [_triton_input("x", "FP32", rows[:, :3].copy())]))

    expected = {
        ("grpc_infer", "200"): 3.0,
        ("grpc_infer", "404"): 1.0,
        ("grpc_infer", "422"): 1.0,
        ("grpc_health", "200"): 1.0,
        ("grpc_metadata", "200"): 1.0,
    }
    deadline = time.monotonic() + 5
    while True:  # the monitor counts once each response is on its way
        samples = _scrape(server)
        requests = {
            (labels["endpoint"], labels["code"]): value
            for name, labels, value in samples
            if name == "flywheel_requests_total" and labels["endpoint"].startswith("grpc_")
        }
        monitored = [v for n, _, v in samples if n == "flywheel_monitored_rows_total"]
        if (requests == expected and monitored == [15.0]) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert requests == expected
    assert monitored == [15.0]
    latency = {
        labels["endpoint"]
        for name, labels, _ in samples
        if name == "flywheel_request_duration_seconds_count"
    }
    assert {"grpc_infer", "grpc_health", "grpc_metadata"} <= latency
    in_flight = [v for n, _, v in samples if n == "flywheel_in_flight_requests"]
    assert in_flight == [0.0]


def test_port_zero_turns_grpc_off(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", grpc_port=0)
    assert server.grpc_target == ""
    assert httpx.get(server.url + "/v2/health/ready").status_code == 200
    assert "gRPC" not in server.output()


def test_a_grpc_port_in_use_stops_the_server(iris: Artifacts, tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        argv = [
            sys.executable,
            "-m",
            "flywheel_serving",
            f"--model-uri={iris.model_uri}",
            "--model-name=iris",
            f"--sha256={iris.sha256}",
            f"--artifacts-root={iris.root}",
            "--host=127.0.0.1",
            f"--port={free_port()}",
            f"--grpc-port={taken.getsockname()[1]}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr[-2000:]
    assert "gRPC server not started" in done.stderr
