"""Strict tensors over real HTTP: every datatype checked, never a 500, never a null in a 200;
and the binary tensor data extension (requests and answers), byte for byte."""

from __future__ import annotations

import json
import struct
from typing import Any

import httpx
import numpy as np

from tests.serving.conftest import Artifacts, ServerFactory
from tests.serving.test_protocol import FEATURES, ROWS, _reference

HEADER = "Inference-Header-Content-Length"


def _tensor(datatype: Any, data: Any, shape: Any = (1, 4), name: str = "x") -> dict[str, Any]:
    return {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}


# (case, body, status, fragment of the error)
REFUSED: list[tuple[str, Any, int, str]] = [
    ("datatype as a list", _tensor(["FP32"], [1, 2, 3, 4]), 400, "datatype"),
    ("datatype as an object", _tensor({}, [1, 2, 3, 4]), 400, "datatype"),
    ("shape as an object", _tensor("FP32", [1, 2, 3, 4], shape={}), 400, "shape"),
    ("a boolean dimension", _tensor("FP32", [1, 2, 3, 4], shape=[True, 4]), 400, "shape"),
    ("a name that is a number", _tensor("FP32", [1, 2, 3, 4], name=7), 400, "name"),  # type: ignore[arg-type]
    ("beyond float32", _tensor("FP32", [1e39, 1, 1, 1]), 422, "beyond the float32 range"),
    ("beyond float32 as FP64", _tensor("FP64", [1, 1, -1e300, 1]), 422, "input x: feature"),
    ("the string inf", _tensor("FP32", ["inf", 1, 1, 1]), 400, "FP32 data must be numbers"),
    ("a numeric string", _tensor("FP32", ["1.5", 1, 1, 1]), 400, "FP32 data must be numbers"),
    ("a boolean among numbers", _tensor("FP32", [True, 1, 1, 1]), 400, "must be numbers"),
    ("a float in INT64", _tensor("INT64", [1.5, 1, 1, 1]), 400, "INT64 data must be integers"),
    ("an INT8 out of range", _tensor("INT8", [1000, 1, 1, 1]), 400, "[-128, 127]"),
    ("a negative UINT8", _tensor("UINT8", [-1, 1, 1, 1]), 400, "[0, 255]"),
    ("an integer beyond uint64", _tensor("UINT64", [2**70, 1, 1, 1]), 400, "UINT64"),
    ("a float in BOOL", _tensor("BOOL", [0.5, 1, 1, 1]), 400, "BOOL data must be true or false"),
    ("BOOL for numeric features", _tensor("BOOL", [True, False, True, True]), 422, "BOOL"),
    ("an object in BYTES", _tensor("BYTES", [{}, "a", "b", "c"]), 400, "BYTES"),
    ("a boolean in BYTES", _tensor("BYTES", [True, "a", "b", "c"]), 400, "BYTES"),
    ("text for a numeric feature", _tensor("BYTES", ["a", "1", "2", "3"]), 422, "not a number"),
    ("inf text for a numeric feature", _tensor("BYTES", ["inf", "1", "2", "3"]), 422, "beyond"),
    ("data as an object", _tensor("FP32", {"a": 1}), 400, "data must be a list"),
    ("no data", {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32"}]}, 400, "data"),
    ("parameters as a list", _tensor("FP32", [1, 2, 3, 4]) | {"parameters": []}, 400, "object"),
    (
        "a parameter that is null",
        _tensor("FP32", [1, 2, 3, 4]) | {"parameters": {"note": None}},
        400,
        "parameters`.note must be a boolean, a number or a string",
    ),
    (
        "a classification output",
        _tensor("FP32", [1, 2, 3, 4])
        | {"outputs": [{"name": "label", "parameters": {"classification": 2}}]},
        400,
        "classification",
    ),
    (
        "binary_data not a boolean",
        _tensor("FP32", [1, 2, 3, 4])
        | {"outputs": [{"name": "label", "parameters": {"binary_data": 1}}]},
        400,
        "binary_data",
    ),
    (
        "an output name that is not a string",
        _tensor("FP32", [1, 2, 3, 4]) | {"outputs": [{"name": 3}]},
        400,
        "outputs",
    ),
]


def test_every_malformed_tensor_gets_its_4xx_and_the_server_answers_on(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    wrong = []
    with server.client() as http:
        for case, body, status, fragment in REFUSED:
            answer = http.post("/v2/models/iris/infer", content=json.dumps(body).encode())
            error = (
                answer.json().get("error", "")
                if answer.headers.get("content-type") == "application/json"
                else ""
            )
            if answer.status_code != status or fragment not in error:
                wrong.append((case, answer.status_code, answer.text[:200]))
        for case, body, fragment in (
            ("v1 beyond float32", {"instances": [[1e39, 1, 1, 1]]}, "beyond"),
            ("v1 a numeric string", {"instances": [["1.5", 1, 1, 1]]}, "numeric"),
            ("v1 a boolean", {"instances": [[True, 1, 1, 1]]}, "numeric"),
            ("v1 a huge integer", {"instances": [[10**300, 1, 1, 1]]}, "beyond"),
        ):
            answer = http.post("/v1/models/iris:predict", content=json.dumps(body).encode())
            if answer.status_code // 100 != 4 or fragment not in answer.text:
                wrong.append((case, answer.status_code, answer.text[:200]))
        feedback = http.post(
            "/v2/models/iris/feedback", content=b'{"prediction": "0", "label": ' + b"9" * 400 + b"}"
        )
        assert feedback.status_code // 100 == 4, feedback.text  # beyond a JSON number
        assert not wrong, wrong
        answer = http.post("/v2/models/iris/infer", json=_tensor("FP32", ROWS[0]))
        assert answer.status_code == 200


def test_numbers_of_any_numeric_datatype_and_nested_data_are_accepted(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    labels, _ = _reference(iris, [[5, 3, 1, 0]])
    with server.client() as http:
        for datatype in ("FP16", "FP32", "FP64", "INT8", "INT32", "INT64", "UINT8", "UINT64"):
            answer = http.post("/v2/models/iris/infer", json=_tensor(datatype, [[5, 3, 1, 0]]))
            assert answer.status_code == 200, (datatype, answer.text)
            assert answer.json()["outputs"][0]["data"] == labels, datatype


def _binary_request(
    tensors: list[tuple[str, str, list[int], bytes]], **extra: Any
) -> tuple[bytes, dict[str, str]]:
    document = {
        "inputs": [
            {"name": n, "datatype": d, "shape": s, "parameters": {"binary_data_size": len(raw)}}
            for n, d, s, raw in tensors
        ],
        **extra,
    }
    head = json.dumps(document).encode()
    body = head + b"".join(raw for *_, raw in tensors)
    return body, {HEADER: str(len(head)), "content-type": "application/octet-stream"}


def _split(answer: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    length = int(answer.headers[HEADER])
    document = json.loads(answer.content[:length])
    raw, offset = {}, length
    for output in document["outputs"]:
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            raw[output["name"]] = answer.content[offset : offset + size]
            offset += size
    assert offset == len(answer.content)
    return document, raw


def _strings(raw: bytes) -> list[str]:
    values, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        values.append(raw[offset + 4 : offset + 4 + length].decode())
        offset += 4 + length
    return values


def test_binary_tensors_in_and_out_match_json_and_onnxruntime(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    labels, probabilities = _reference(iris, ROWS)
    matrix = np.array(ROWS, dtype=np.float32)
    with server.client() as http:
        body, headers = _binary_request(
            [("x", "FP32", [3, 4], matrix.tobytes())], parameters={"binary_data_output": True}
        )
        answer = http.post("/v2/models/iris/infer", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "application/octet-stream"
        document, raw = _split(answer)
        assert "binary_data_output" not in document.get("parameters", {})
        assert _strings(raw["label"]) == labels
        scores = np.frombuffer(raw["probabilities"], dtype="<f4").reshape(3, -1)
        np.testing.assert_allclose(scores, probabilities, rtol=1e-6)
        # Per-feature binary inputs, one output binary and one JSON.
        columns = [
            (name, "FP64", [3, 1], matrix[:, i].astype("<f8").tobytes())
            for i, name in enumerate(FEATURES)
        ]
        outputs = [
            {"name": "label"},
            {"name": "probabilities", "parameters": {"binary_data": True}},
        ]
        body, headers = _binary_request(columns, outputs=outputs)
        document, raw = _split(http.post("/v2/models/iris/infer", content=body, headers=headers))
        assert document["outputs"][0]["data"] == labels
        assert list(raw) == ["probabilities"]
        # Binary in, JSON out (no binary output asked for): a plain JSON answer.
        body, headers = _binary_request([("x", "FP32", [3, 4], matrix.tobytes())])
        answer = http.post("/v2/models/iris/infer", content=body, headers=headers)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["outputs"][0]["data"] == labels


def test_binary_bytes_tensors_for_categorical_features(
    serve: ServerFactory, shops: Artifacts
) -> None:
    server = serve(shops, "shops")
    city = b"".join(struct.pack("<I", len(c)) + c for c in (b"city0", b"city3", "cité".encode()))
    spend = np.array([[10.0], [80.0], [50.0]], dtype="<f4").tobytes()
    with server.client() as http:
        body, headers = _binary_request(
            [("city", "BYTES", [3, 1], city), ("spend", "FP32", [3, 1], spend)]
        )
        answer = http.post("/v2/models/shops/infer", content=body, headers=headers)
        assert answer.status_code == 200, answer.text
        as_json = http.post(
            "/v2/models/shops/infer",
            json={
                "inputs": [
                    {
                        "name": "city",
                        "shape": [3],
                        "datatype": "BYTES",
                        "data": ["city0", "city3", "cité"],
                    },
                    {"name": "spend", "shape": [3], "datatype": "FP32", "data": [10.0, 80.0, 50.0]},
                ]
            },
        )
        assert answer.json()["outputs"] == as_json.json()["outputs"]
        for case, tensors, fragment in (
            (
                "cut short",
                [("city", "BYTES", [3, 1], city[:-2]), ("spend", "FP32", [3, 1], spend)],
                "cut short",
            ),
            (
                "not UTF-8",
                [
                    ("city", "BYTES", [1], struct.pack("<I", 2) + b"\xff\xfe"),
                    ("spend", "FP32", [1], spend[:4]),
                ],
                "UTF-8",
            ),
            (
                "bytes left",
                [("city", "BYTES", [1], city), ("spend", "FP32", [1], spend[:4])],
                "left after",
            ),
            (
                "wrong size",
                [("city", "BYTES", [3], city), ("spend", "FP32", [3], spend[:8])],
                "takes 12",
            ),
            (
                "NaN bits",
                [
                    ("city", "BYTES", [1], city[:9]),
                    ("spend", "FP32", [1], struct.pack("<f", float("nan"))),
                ],
                "missing",
            ),
            (
                "inf bits",
                [
                    ("city", "BYTES", [1], city[:9]),
                    ("spend", "FP32", [1], struct.pack("<f", float("inf"))),
                ],
                "beyond",
            ),
            (
                "BOOL byte 2",
                [("city", "BYTES", [1], city[:9]), ("spend", "BOOL", [1], b"\x02")],
                "0 or 1",
            ),
        ):
            body, headers = _binary_request(tensors)
            answer = http.post("/v2/models/shops/infer", content=body, headers=headers)
            assert answer.status_code in (400, 422), (case, answer.text)
            assert fragment in answer.json()["error"], (case, answer.text)


def test_malformed_binary_framing_gets_400(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris")
    raw = np.array(ROWS[0], dtype="<f4").tobytes()
    with server.client() as http:
        body, headers = _binary_request([("x", "FP32", [1, 4], raw)])
        for case, content, header, fragment in (
            ("header beyond the body", body, str(len(body) + 1), "within"),
            ("header not a number", body, "12a", "within"),
            ("extra bytes", body + b"\0", headers[HEADER], "no input claims"),
            ("missing bytes", body[:-1], headers[HEADER], "runs past"),
            ("header cuts the JSON", body, "10", "not valid JSON"),
        ):
            answer = http.post("/v2/models/iris/infer", content=content, headers={HEADER: header})
            assert answer.status_code == 400, (case, answer.text)
            assert fragment in answer.json()["error"], (case, answer.text)
        gzip = http.post(
            "/v2/models/iris/infer",
            json=_tensor("FP32", ROWS[0]),
            headers={"content-encoding": "gzip"},
        )
        assert gzip.status_code == 415
        assert http.get("/v2/health/ready").status_code == 200
