"""Real OIP v2 clients on their defaults against real servers.

tritonclient.http sends tensors from numpy as binary data (the binary tensor data extension) and
asks for binary outputs by default (`binary_data` on each requested output, or
`binary_data_output` when it names none); the kserve SDK (0.21, in its own virtualenv:
tests/support/clients.py) sends numpy tensors as binary data and reads JSON or binary answers.
Whatever they decode must equal what the plain JSON REST endpoint answers for the same rows.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton  # type: ignore[import-untyped]
from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

from tests.serving.conftest import Artifacts, Server, ServerFactory
from tests.serving.test_protocol import FEATURES, ROWS
from tests.support.clients import VenvError, kserve_python, run_kserve

HEADER = "Inference-Header-Content-Length"
IRIS_ROWS = [*ROWS, [4.9, 2.5, 4.5, 1.7], [7.7, 2.6, 6.9, 2.3]]
CITIES = ["city0", "city3", "cité", "city29", "city12"]
SPEND = [10.0, 80.0, 50.0, 49.5, 51.25]
REST_ONLY = {"grpc_port": 0}
"""These tests are about REST: no gRPC listener."""
Tensor = tuple[str, str, list[int], list[Any]]
"""(name, datatype, shape, flat values) of one input tensor."""


def _diabetes_rows() -> list[list[float]]:
    from sklearn.datasets import load_diabetes

    data = load_diabetes().data[:6].astype(np.float32)
    return [[float(v) for v in row] for row in data]


def _rest(http: httpx.Client, model: str, tensors: list[Tensor]) -> dict[str, list[Any]]:
    """The plain JSON REST answer for the same tensors: output name -> flat data."""
    body = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "data": values} for n, d, s, values in tensors
        ]
    }
    answer = http.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    return {o["name"]: o["data"] for o in answer.json()["outputs"]}


def _same(decoded: dict[str, list[Any]], expected: dict[str, list[Any]]) -> None:
    """Outputs equal: text as text, numbers exactly as float32 (both wires carry float32)."""
    assert set(decoded) == set(expected)
    for name, values in expected.items():
        if values and isinstance(values[0], str):
            assert decoded[name] == values, name
        else:
            np.testing.assert_array_equal(
                np.asarray(decoded[name], dtype=np.float32),
                np.asarray(values, dtype=np.float32),
                err_msg=name,
            )


def _plain(array: Any) -> list[Any]:
    """A client's decoded output as a flat list (BYTES as str)."""
    return [v.decode() if isinstance(v, bytes) else v for v in np.asarray(array).reshape(-1)]


# --- tritonclient.http -------------------------------------------------------------------------


def _triton(server: Server) -> Any:
    return triton.InferenceServerClient(url=server.url.removeprefix("http://"))


def _triton_inputs(tensors: list[Tensor], binary: bool = True) -> list[Any]:
    inputs = []
    for name, datatype, shape, values in tensors:
        dtype = object if datatype == "BYTES" else np.dtype(datatype.replace("FP", "float"))
        given = triton.InferInput(name, shape, datatype)
        array = np.array(values, dtype=dtype).reshape(shape)
        if binary:
            given.set_data_from_numpy(array)  # the default: binary_data=True
        else:
            given.set_data_from_numpy(array, binary_data=False)
        inputs.append(given)
    return inputs


def _triton_infer(
    client: Any,
    model: str,
    tensors: list[Tensor],
    outputs: list[Any] | None = None,
    json_outputs: frozenset[str] = frozenset(),
) -> dict[str, list[Any]]:
    """Infer with binary inputs; every output but `json_outputs` must come back as raw bytes."""
    result = client.infer(model, _triton_inputs(tensors), outputs=outputs)
    described = result.get_response()["outputs"]
    raw = {o["name"] for o in described if "binary_data_size" in (o.get("parameters") or {})}
    assert raw == {o["name"] for o in described} - json_outputs, described
    return {o["name"]: _plain(result.as_numpy(o["name"])) for o in described}


def test_tritonclient_health_and_metadata(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", **REST_ONLY)
    client = _triton(server)
    try:
        assert client.is_server_live()
        assert client.is_server_ready()
        assert client.is_model_ready("iris")
        assert client.is_model_ready("iris", "3")
        assert not client.is_model_ready("nope")
        assert not client.is_model_ready("iris", "9")
        with server.client() as http:
            assert client.get_server_metadata() == http.get("/v2").json()
            assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
            metadata = http.get("/v2/models/iris").json()
            assert client.get_model_metadata("iris") == metadata
            assert client.get_model_metadata("iris", "3") == metadata
            missing = http.get("/v2/models/nope").json()["error"]
        with pytest.raises(InferenceServerException) as raised:
            client.get_model_metadata("nope")
        assert (raised.value.status(), raised.value.message()) == ("404", missing)
    finally:
        client.close()


def test_tritonclient_infers_iris_on_its_defaults(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", **REST_ONLY)
    rows = len(IRIS_ROWS)
    matrix: list[Tensor] = [("x", "FP32", [rows, 4], [v for r in IRIS_ROWS for v in r])]
    columns: list[Tensor] = [
        (name, "FP32", [rows, 1], [r[i] for r in IRIS_ROWS]) for i, name in enumerate(FEATURES)
    ]
    flat_columns: list[Tensor] = [(n, d, [rows], v) for n, d, _, v in columns]
    client = _triton(server)
    try:
        with server.client() as http:
            expected = _rest(http, "iris", matrix)
            assert _rest(http, "iris", columns) == expected
        # No outputs named: binary_data_output, every output raw after the JSON.
        assert _triton_infer(client, "iris", matrix).keys() == {"label", "probabilities"}
        _same(_triton_infer(client, "iris", matrix), expected)
        _same(_triton_infer(client, "iris", columns), expected)
        # Outputs named: each with binary_data true (InferRequestedOutput's default).
        both = [triton.InferRequestedOutput("label"), triton.InferRequestedOutput("probabilities")]
        _same(_triton_infer(client, "iris", matrix, both), expected)
        only = [triton.InferRequestedOutput("probabilities")]
        _same(
            _triton_infer(client, "iris", flat_columns, only),
            {"probabilities": expected["probabilities"]},
        )
        # Off the defaults: JSON both ways, and one JSON output beside a binary one.
        result = client.infer(
            "iris",
            _triton_inputs(matrix, binary=False),
            outputs=[
                triton.InferRequestedOutput("label", binary_data=False),
                triton.InferRequestedOutput("probabilities", binary_data=False),
            ],
        )
        _same({o["name"]: o["data"] for o in result.get_response()["outputs"]}, expected)
        mixed = [
            triton.InferRequestedOutput("label", binary_data=False),
            triton.InferRequestedOutput("probabilities"),
        ]
        _same(_triton_infer(client, "iris", matrix, mixed, frozenset({"label"})), expected)
        # The request id and parameters come back.
        result = client.infer(
            "iris", _triton_inputs(matrix), request_id="r-7", parameters={"note": "x"}
        )
        response = result.get_response()
        assert (response["id"], response["model_name"], response["model_version"]) == (
            "r-7",
            "iris",
            "3",
        )
        assert response["parameters"] == {"note": "x"}
        assert "binary_data_output" not in response["parameters"]
    finally:
        client.close()


def test_tritonclient_infers_a_categorical_model(serve: ServerFactory, shops: Artifacts) -> None:
    server = serve(shops, "shops", **REST_ONLY)
    rows = len(CITIES)
    columns: list[Tensor] = [
        ("city", "BYTES", [rows, 1], CITIES),
        ("spend", "FP32", [rows, 1], SPEND),
    ]
    matrix: list[Tensor] = [
        ("x", "BYTES", [rows, 2], [v for c, s in zip(CITIES, SPEND, strict=True) for v in (c, s)])
    ]
    client = _triton(server)
    try:
        with server.client() as http:
            expected = _rest(http, "shops", columns)
            # Text for the numeric column of a BYTES matrix is parsed as a number.
            as_text: list[Tensor] = [("x", "BYTES", [rows, 2], [str(v) for v in matrix[0][3]])]
            assert _rest(http, "shops", as_text) == expected
        _same(_triton_infer(client, "shops", columns), expected)
        flat: list[Tensor] = [(n, d, [rows], v) for n, d, _, v in columns]
        _same(_triton_infer(client, "shops", flat), expected)
        _same(
            _triton_infer(client, "shops", [(*matrix[0][:3], [str(v) for v in matrix[0][3]])]),
            expected,
        )
        label = [triton.InferRequestedOutput("label")]
        _same(_triton_infer(client, "shops", columns, label), {"label": expected["label"]})
    finally:
        client.close()


def test_tritonclient_infers_a_regressor(serve: ServerFactory, diabetes: Artifacts) -> None:
    server = serve(diabetes, "diabetes", **REST_ONLY)
    data = _diabetes_rows()
    width = len(diabetes.features)
    matrix: list[Tensor] = [("x", "FP32", [len(data), width], [v for r in data for v in r])]
    client = _triton(server)
    try:
        with server.client() as http:
            expected = _rest(http, "diabetes", matrix)
        assert list(expected) == ["variable"]
        _same(_triton_infer(client, "diabetes", matrix), expected)
        wanted = [triton.InferRequestedOutput("variable")]
        _same(_triton_infer(client, "diabetes", matrix, wanted), expected)
        columns: list[Tensor] = [
            (f["name"], "FP64", [len(data)], [r[i] for r in data])
            for i, f in enumerate(diabetes.features)
        ]
        _same(_triton_infer(client, "diabetes", columns), expected)
        metadata = client.get_model_metadata("diabetes")
        assert [i["name"] for i in metadata["inputs"]] == [f["name"] for f in diabetes.features]
    finally:
        client.close()


def test_tritonclient_raises_the_servers_error_for_a_4xx(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris", **REST_ONLY)
    nan = float("nan")
    cases: list[tuple[str, str, list[Tensor], list[Any] | None, int, str]] = [
        ("three columns", "iris", [("x", "FP32", [1, 3], [1, 2, 3])], None, 422, "takes 4"),
        ("a NaN", "iris", [("x", "FP32", [1, 4], [1, nan, 3, 4])], None, 422, "missing"),
        ("text", "iris", [("x", "BYTES", [1, 4], ["a", "1", "2", "3"])], None, 422, "number"),
        (
            "an unknown output",
            "iris",
            [("x", "FP32", [1, 4], ROWS[0])],
            [triton.InferRequestedOutput("logits")],
            400,
            "logits",
        ),
        (
            "a classification output",
            "iris",
            [("x", "FP32", [1, 4], ROWS[0])],
            [triton.InferRequestedOutput("probabilities", class_count=2)],
            400,
            "classification",
        ),
        ("another model", "nope", [("x", "FP32", [1, 4], ROWS[0])], None, 404, "not served"),
    ]
    client = _triton(server)
    try:
        with server.client() as http:
            for case, model, tensors, outputs, status, fragment in cases:
                inputs = _triton_inputs(tensors)
                # The bytes tritonclient sends, sent by hand: the server's own words for them.
                body, json_size = triton.InferenceServerClient.generate_request_body(
                    inputs, outputs=outputs
                )
                headers = {HEADER: str(json_size)} if json_size is not None else {}
                answer = http.post(f"/v2/models/{model}/infer", content=body, headers=headers)
                assert answer.status_code == status, (case, answer.text)
                said = answer.json()["error"]
                assert fragment in said, (case, said)
                with pytest.raises(InferenceServerException) as raised:
                    client.infer(model, inputs, outputs=outputs)
                assert raised.value.status() == str(status), case
                assert raised.value.message() == said, case
        assert client.is_server_ready()
    finally:
        client.close()


# --- the kserve SDK ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def kserve_sdk() -> Path:
    """The kserve SDK's python (its virtualenv is built on first use: ~10 s from PyPI)."""
    try:
        python, took = kserve_python()
    except VenvError as error:
        pytest.fail(f"cannot build the kserve SDK virtualenv: {error}", pytrace=False)
    if took > 1:
        print(f"built the kserve SDK virtualenv in {took:.1f} s")
    return python


def _kserve_case(case: str, tensors: list[Tensor], **extra: Any) -> dict[str, Any]:
    inputs = [{"name": n, "datatype": d, "shape": s, "values": v} for n, d, s, v in tensors]
    return {"case": case, "inputs": inputs, **extra}


def _kserve_outputs(answer: dict[str, Any], case: str) -> dict[str, list[Any]]:
    result = answer["infer"][case]
    assert "value" in result, (case, result)
    return {o["name"]: o["data"] for o in result["value"]["outputs"]}


def test_kserve_sdk_on_its_defaults(
    serve: ServerFactory,
    iris: Artifacts,
    shops: Artifacts,
    diabetes: Artifacts,
    kserve_sdk: Path,
) -> None:
    servers = {
        a: serve(art, a, **REST_ONLY)
        for a, art in (("iris", iris), ("shops", shops), ("diabetes", diabetes))
    }
    data = _diabetes_rows()
    rows = len(IRIS_ROWS)
    iris_matrix: list[Tensor] = [("x", "FP32", [rows, 4], [v for r in IRIS_ROWS for v in r])]
    iris_columns: list[Tensor] = [
        (name, "FP32", [rows, 1], [r[i] for r in IRIS_ROWS]) for i, name in enumerate(FEATURES)
    ]
    shops_columns: list[Tensor] = [
        ("city", "BYTES", [len(CITIES)], CITIES),
        ("spend", "FP32", [len(CITIES)], SPEND),
    ]
    diabetes_matrix: list[Tensor] = [
        ("x", "FP32", [len(data), len(diabetes.features)], [v for r in data for v in r])
    ]
    wrong: list[Tensor] = [("x", "FP32", [1, 3], [1.0, 2.0, 3.0])]
    spec = {
        "targets": [
            {
                "url": servers["iris"].url,
                "model": "iris",
                "infer": [
                    _kserve_case("matrix", iris_matrix, id="k-1"),
                    _kserve_case("columns", iris_columns),
                    _kserve_case(
                        "binary outputs", iris_matrix, parameters={"binary_data_output": True}
                    ),
                    _kserve_case("three columns", wrong),
                ],
                "v1": [{"case": "instances", "body": {"instances": IRIS_ROWS}}],
            },
            {
                "url": servers["shops"].url,
                "model": "shops",
                "infer": [_kserve_case("columns", shops_columns)],
            },
            {
                "url": servers["diabetes"].url,
                "model": "diabetes",
                "infer": [_kserve_case("matrix", diabetes_matrix)],
                "v1": [{"case": "instances", "body": {"instances": data}}],
            },
        ]
    }
    answers = dict(zip(servers, run_kserve(kserve_sdk, spec), strict=True))
    first = next(s for s in answers["iris"]["sent"] if s["url"].endswith("/infer"))
    print(f"the kserve SDK's first infer request: {first['headers']}")
    print(f"  body: {base64.b64decode(first['body'])!r}")
    # On its default protocol (v1) the SDK asks `GET /` and `GET /v1/models/<name>` for health:
    # see test_kserve_v1_model_ready below.
    print(f"the kserve SDK's v1 health calls: {answers['iris']['v1_health']}")
    for name, answer in answers.items():
        assert answer["live"] == {"value": True}, name
        assert answer["ready"] == {"value": True}, name
        assert answer["model_ready"] == {"value": True}, name
        with servers[name].client() as http:
            metadata = http.get(f"/v2/models/{name}").json()
            server = http.get("/v2").json()
        assert answer["server_metadata"] == server
        described = answer["model_metadata"]
        assert (described["name"], described["versions"], described["platform"]) == (
            name,
            ["3"],
            "onnxruntime_onnx",
        )
        assert described["inputs"] == metadata["inputs"]
        assert described["outputs"] == metadata["outputs"]
        # Every inference request went out in the binary extension (the SDK's default).
        for sent in answer["sent"]:
            if sent["url"].endswith("/infer"):
                assert HEADER.lower() in sent["headers"], sent["headers"]
                head = int(sent["headers"][HEADER.lower()])
                document = json.loads(base64.b64decode(sent["body"])[:head])
                assert all("binary_data_size" in i["parameters"] for i in document["inputs"])

    iris_answer = answers["iris"]
    with servers["iris"].client() as http:
        expected = _rest(http, "iris", iris_matrix)
        error = http.post(
            "/v2/models/iris/infer",
            json={
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}]
            },
        ).json()["error"]
        v1 = http.post("/v1/models/iris:predict", json={"instances": IRIS_ROWS}).json()
    for case in ("matrix", "columns", "binary outputs"):
        _same(_kserve_outputs(iris_answer, case), expected)
    assert iris_answer["infer"]["matrix"]["value"]["id"] == "k-1"
    failed = iris_answer["infer"]["three columns"]
    assert failed["status"] == 422, failed
    assert error in failed["error"], failed
    assert iris_answer["v1"]["instances"] == {"value": v1}

    with servers["shops"].client() as http:
        expected = _rest(http, "shops", shops_columns)
    _same(_kserve_outputs(answers["shops"], "columns"), expected)

    with servers["diabetes"].client() as http:
        expected = _rest(http, "diabetes", diabetes_matrix)
        v1 = http.post("/v1/models/diabetes:predict", json={"instances": data}).json()
    _same(_kserve_outputs(answers["diabetes"], "matrix"), expected)
    assert answers["diabetes"]["v1"]["instances"] == {"value": v1}


def test_kserve_v1_model_ready(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", **REST_ONLY)
    with server.client() as http:
        answer = http.get("/v1/models/iris")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"name": "iris", "ready": True}
