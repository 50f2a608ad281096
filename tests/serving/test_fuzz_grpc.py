"""Property-based fuzz of gRPC ModelInfer: 2,000 generated requests, malformed in every field.

Messages are built with tritonclient's copy of KServe's `inference` protobuf package (the wire
format is the one the server generates from; both copies cannot be imported in one process).
Every answer must be OK or a client error (INVALID_ARGUMENT, NOT_FOUND, RESOURCE_EXHAUSTED),
never INTERNAL/UNKNOWN or a dropped channel; an OK answer holds only finite numbers; afterwards
the server answers a known request as before and has logged no internal error.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from typing import Any

import grpc
import numpy as np
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2 as pb  # type: ignore[import-untyped]
from tritonclient.grpc import service_pb2_grpc

from tests.serving.conftest import Artifacts, ServerFactory
from tests.serving.test_protocol import FEATURES, ROWS

EXAMPLES = int(os.environ.get("FLYWHEEL_FUZZ_EXAMPLES", "2000"))
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
DATATYPES = ["BOOL", "INT8", "INT32", "INT64", "UINT8", "UINT64", "FP16", "FP32", "FP64", "BYTES"]
FIELDS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT64": "uint64_contents",
    "FP16": "fp32_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e39, -1e39, 3.4e38, 1e308, 0.0, 5.1]),
)


def _typed(draw: st.DrawFn, tensor: Any, field: str, count: int) -> None:
    contents = getattr(tensor.contents, field)
    if field == "bool_contents":
        contents.extend(draw(st.lists(st.booleans(), min_size=count, max_size=count)))
    elif field == "int_contents":
        contents.extend(
            draw(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=count, max_size=count))
        )
    elif field == "int64_contents":
        contents.extend(
            draw(st.lists(st.integers(-(2**63), 2**63 - 1), min_size=count, max_size=count))
        )
    elif field == "uint_contents":
        contents.extend(draw(st.lists(st.integers(0, 2**32 - 1), min_size=count, max_size=count)))
    elif field == "uint64_contents":
        contents.extend(draw(st.lists(st.integers(0, 2**64 - 1), min_size=count, max_size=count)))
    elif field in ("fp32_contents", "fp64_contents"):
        values = draw(st.lists(FLOATS, min_size=count, max_size=count))
        if field == "fp32_contents":  # protobuf refuses a double beyond float32 for a float field
            values = [float(np.float32(v)) if abs(v) < 3.4e38 or v != v else v for v in values]
            values = [v if v != v or abs(v) <= 3.4e38 else float("inf") for v in values]
        contents.extend(values)
    else:
        contents.extend(draw(st.lists(st.binary(max_size=12), min_size=count, max_size=count)))


def _raw(draw: st.DrawFn, datatype: str, count: int) -> bytes:
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=64))  # any bytes at all
    if datatype == "BYTES":
        parts = draw(st.lists(st.binary(max_size=8), min_size=count, max_size=count))
        raw = b"".join(struct.pack("<I", len(p)) + p for p in parts)
    else:
        size = {"BOOL": 1, "INT8": 1, "UINT8": 1, "FP16": 2, "INT32": 4, "FP32": 4}.get(datatype, 8)
        raw = draw(st.binary(min_size=count * size, max_size=count * size))
    cut = draw(st.integers(0, 3))
    return raw[:-cut] if cut and raw else raw


@st.composite
def infer_requests(draw: st.DrawFn) -> Any:
    request = pb.ModelInferRequest()
    request.model_name = "iris" if draw(st.integers(0, 15)) else draw(st.sampled_from(["x", ""]))
    request.model_version = draw(st.sampled_from(["", "3"])) if draw(st.integers(0, 15)) else "9"
    request.id = draw(st.text(max_size=8))
    per_feature = draw(st.booleans())
    names = list(FEATURES) if per_feature else ["x"]
    if draw(st.integers(0, 5)) == 0:
        names = draw(st.lists(st.sampled_from([*FEATURES, "x", "colour", ""]), max_size=5))
    raw_mode = draw(st.booleans())
    for name in names:
        tensor = request.inputs.add()
        tensor.name = name
        tensor.datatype = (
            "FP32" if draw(st.booleans()) else draw(st.sampled_from([*DATATYPES, "FP8", "", "x"]))
        )
        rows = draw(st.integers(0, 3))
        shape = [rows] if per_feature else [rows, 4]
        if draw(st.integers(0, 5)) == 0:
            shape = draw(st.lists(st.integers(-3, 2**40), max_size=3))
        tensor.shape.extend(shape)
        count = min(64, max(0, int(np.prod(shape)))) if shape and max(shape) < 1000 else 4
        count = draw(st.sampled_from([count] * 6 + [count + 1, max(0, count - 1)]))
        datatype = tensor.datatype if tensor.datatype in FIELDS else "FP32"
        if raw_mode:
            request.raw_input_contents.append(_raw(draw, datatype, count))
        else:
            field = (
                FIELDS[datatype]
                if draw(st.integers(0, 6))
                else draw(st.sampled_from(list(FIELDS.values())))
            )
            _typed(draw, tensor, field, count)
    if draw(st.integers(0, 8)) == 0:  # raw and typed mixed, or raw for too few inputs
        request.raw_input_contents.append(b"\0" * 16)
    for name in draw(st.lists(st.sampled_from(["label", "probabilities", "logits"]), max_size=2)):
        request.outputs.add().name = name
    if draw(st.integers(0, 10)) == 0:
        request.parameters["binary_data_output"].bool_param = True
    return request


def _check_ok(response: Any) -> None:
    for index, output in enumerate(response.outputs):
        if output.datatype == "FP32":
            if index < len(response.raw_output_contents):
                values = np.frombuffer(response.raw_output_contents[index], dtype="<f4")
            else:
                values = np.array(output.contents.fp32_contents, dtype=np.float32)
            assert np.isfinite(values).all(), (output.name, values)


def _known(stub: Any) -> Any:
    request = pb.ModelInferRequest(model_name="iris")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[3, 4])
    tensor.contents.fp32_contents.extend(np.array(ROWS, dtype=np.float32).reshape(-1).tolist())
    response = stub.ModelInfer(request, timeout=10)
    return [list(o.contents.bytes_contents) for o in response.outputs[:1]]


def test_fuzz_grpc_model_infer(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris")
    channel = grpc.insecure_channel(server.grpc_target)
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    before = _known(stub)
    statuses: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(infer_requests())
    def model_infer(request: Any) -> None:
        failure: tuple[Any, str] | None = None
        try:
            response = stub.ModelInfer(request, timeout=10)
        except grpc.RpcError as error:
            failure = (error.code(), error.details())
        if failure is not None:
            statuses[failure[0].name] += 1
            assert failure[0] in CLIENT_ERRORS, (failure, request)
            assert failure[1], request
            return
        statuses["OK"] += 1
        _check_ok(response)

    try:
        model_infer()
    finally:
        print(f"gRPC ModelInfer: {sum(statuses.values())} requests, {dict(statuses)}")
        channel.close()
    assert sum(statuses.values()) >= EXAMPLES
    assert statuses["OK"] > 0, statuses
    assert statuses["INVALID_ARGUMENT"] > 0, statuses
    with grpc.insecure_channel(server.grpc_target) as again:
        assert _known(service_pb2_grpc.GRPCInferenceServiceStub(again)) == before
    log = server.output()
    assert "internal error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
