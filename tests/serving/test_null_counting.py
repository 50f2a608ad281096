"""Nothing invisible: rows refused (422) for their values are counted before the refusal, on every
wire (REST JSON, the binary extension, v1 instances, gRPC), over real servers and real scrapes.

Each refused request must leave the 422 as it was, grow `flywheel_refused_rows_total{reason}` by
its rows, and grow each feature's null bin by exactly that feature's missing values, and nothing
else; a request refused for its structure (unknown input, shape) must change none of them.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc import service_pb2 as pb  # type: ignore[import-untyped]

from tests.serving.conftest import Artifacts, Server, ServerFactory

Counts = dict[tuple[str, ...], float]
MISSING_TAIL = "the model was trained on finite values without missing ones"
NAN = float("nan")
REASONS = ["missing", "out_of_range", "not_a_number", "not_a_category", "bool", "non_finite_output"]


def _counts(http: httpx.Client) -> Counts:
    """The refused, rejected and monitored counters and every feature bin, from one scrape."""
    answer = http.get("/metrics")
    assert answer.status_code == 200
    found: Counts = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "flywheel_feature_values_total":
                found[("values", labels["feature"], labels["bin"])] = sample.value
            elif sample.name == "flywheel_refused_rows_total":
                found[("refused", labels["reason"])] = sample.value
            elif sample.name == "flywheel_monitoring_rejected_rows_total":
                found[("rejected", labels["reason"])] = sample.value
            elif sample.name == "flywheel_monitored_rows_total":
                found[("rows",)] = sample.value
    return found


def _grown(http: httpx.Client, before: Counts) -> Counts:
    after = _counts(http)
    assert after.keys() == before.keys(), "the series are fixed"
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


class Wire:
    """One server's HTTP client, and its gRPC ModelInfer, each checked against the counters."""

    def __init__(self, server: Server, model: str) -> None:
        self.http = server.client()
        self.model = model
        self.channel = grpc.insecure_channel(server.grpc_target)
        self.infer = self.channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )

    def refused(self, send: Any, status: int, error: str, grown: Counts) -> None:
        """`send()` answers `status` with exactly `error`, and the counters grow by `grown`."""
        before = _counts(self.http)
        answer = send()
        assert (answer.status_code, answer.json()) == (status, {"error": error})
        assert _grown(self.http, before) == grown

    def grpc_refused(self, request: Any, error: str, grown: Counts) -> None:
        before = _counts(self.http)
        with pytest.raises(grpc.RpcError) as raised:
            self.infer(request, timeout=30)
        failure: Any = raised.value
        assert (failure.code(), failure.details()) == (grpc.StatusCode.INVALID_ARGUMENT, error)
        assert _grown(self.http, before) == grown

    def v2(self, inputs: list[dict[str, Any]]) -> httpx.Response:
        return self.http.post(f"/v2/models/{self.model}/infer", json={"inputs": inputs})

    def v1(self, instances: list[Any]) -> httpx.Response:
        return self.http.post(f"/v1/models/{self.model}:predict", json={"instances": instances})

    def binary(self, inputs: list[tuple[str, str, list[int], Any]]) -> httpx.Response:
        """Each input as JSON `data` or, given bytes, in the binary extension."""
        tensors, raw = [], b""
        for name, datatype, shape, data in inputs:
            tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
            if isinstance(data, bytes):
                tensor["parameters"] = {"binary_data_size": len(data)}
                raw += data
            else:
                tensor["data"] = data
            tensors.append(tensor)
        document = json.dumps({"inputs": tensors}).encode()
        return self.http.post(
            f"/v2/models/{self.model}/infer",
            content=document + raw,
            headers={
                "Inference-Header-Content-Length": str(len(document)),
                "Content-Type": "application/octet-stream",
            },
        )

    def close(self) -> None:
        self.http.close()
        self.channel.close()


@pytest.fixture
def wire(serve: ServerFactory) -> Iterator[Any]:
    opened: list[Wire] = []

    def connect(artifacts: Artifacts, model: str, **flags: Any) -> Wire:
        opened.append(Wire(serve(artifacts, model, **flags), model))
        return opened[-1]

    yield connect
    for each in opened:
        each.close()


def _strings(values: list[str]) -> bytes:
    return b"".join(struct.pack("<I", len(v.encode())) + v.encode() for v in values)


def _missing(input_: str, feature: str, element: int) -> str:
    return (
        f"input {input_}: feature {feature} has a missing value (element {element}); {MISSING_TAIL}"
    )


def test_a_missing_value_is_counted_on_every_wire_before_the_422(
    wire: Any, shops: Artifacts
) -> None:
    shop = wire(shops, "shops")
    baseline = _counts(shop.http)
    assert {k[1] for k in baseline if k[0] == "refused"} == set(REASONS)
    assert all(v == 0 for k, v in baseline.items() if k[0] == "refused"), "every reason at 0"
    spend, city = ("values", "spend", "null"), ("values", "city", "__null__")

    # REST JSON, one tensor per feature: two numbers missing, one city (refused with them).
    shop.refused(
        lambda: shop.v2(
            [
                {"name": "city", "datatype": "BYTES", "shape": [3], "data": ["city0", None, "c"]},
                {"name": "spend", "datatype": "FP64", "shape": [3], "data": [10.0, None, None]},
            ]
        ),
        422,
        _missing("spend", "spend", 1),
        {spend: 2, city: 1, ("refused", "missing"): 3},
    )
    # The binary extension: a NaN in raw FP32 bytes.
    shop.refused(
        lambda: shop.binary(
            [
                ("city", "BYTES", [2], _strings(["city0", "city1"])),
                ("spend", "FP32", [2], np.array([5.0, NAN], dtype=np.float32).tobytes()),
            ]
        ),
        422,
        _missing("spend", "spend", 1),
        {spend: 1, ("refused", "missing"): 2},
    )
    # v1 instances: an instance without spend, one with spend null (and city null).
    shop.refused(
        lambda: shop.v1(
            [{"city": "city0", "spend": 1.0}, {"city": "city1"}, {"city": None, "spend": None}]
        ),
        422,
        "instances lack features ['spend']",
        {spend: 2, city: 1, ("refused", "missing"): 3},
    )
    # v1 rows in the card's order, a null among them.
    order = [f["name"] for f in shops.features]
    row = {"city": "city3", "spend": None}
    shop.refused(
        lambda: shop.v1(
            [[row[n] for n in order], [{"city": "city3", "spend": 2.0}[n] for n in order]]
        ),
        422,
        _missing("instances", "spend", 0),
        {spend: 1, ("refused", "missing"): 2},
    )
    # gRPC, raw contents: the REST message, INVALID_ARGUMENT, the same counts.
    request = pb.ModelInferRequest(model_name="shops")
    request.inputs.add(name="city", datatype="BYTES", shape=[3])
    request.inputs.add(name="spend", datatype="FP32", shape=[3])
    request.raw_input_contents.extend(
        [_strings(["city0", "city2", "city9"]), np.array([NAN, NAN, NAN], np.float32).tobytes()]
    )
    shop.grpc_refused(request, _missing("spend", "spend", 0), {spend: 3, ("refused", "missing"): 3})
    # The rows refused so far were never monitored; a good request still is.
    assert (
        shop.v2(
            [
                {"name": "city", "datatype": "BYTES", "shape": [1], "data": ["city0"]},
                {"name": "spend", "datatype": "FP32", "shape": [1], "data": [50.0]},
            ]
        ).status_code
        == 200
    )
    total = _grown(shop.http, baseline)
    assert total[("rows",)] == 1
    assert (total[spend], total[city], total[("refused", "missing")]) == (9, 2, 13)


def test_missing_values_of_a_matrix_count_per_feature_over_json_and_grpc(
    wire: Any, iris: Artifacts
) -> None:
    flower = wire(iris, "iris")
    names = [f["name"] for f in iris.features]
    rows: list[list[float | None]] = [
        [None, 3.5, 1.4, None],
        [5.1, 3.0, 1.4, None],
        [6.0, 2.9, 4.5, 1.5],
    ]
    x: dict[str, Any] = {"name": "x", "datatype": "FP32", "shape": [3, 4], "data": rows}
    null: Counts = {("values", names[0], "null"): 1, ("values", names[3], "null"): 2}
    flower.refused(
        lambda: flower.v2([x]),
        422,
        _missing("x", names[0], 0),
        {**null, ("refused", "missing"): 3},
    )
    typed = pb.ModelInferRequest(model_name="iris")
    tensor = typed.inputs.add(name="x", datatype="FP32", shape=[3, 4])
    tensor.contents.fp32_contents.extend([NAN if v is None else v for r in rows for v in r])
    flower.grpc_refused(typed, _missing("x", names[0], 0), {**null, ("refused", "missing"): 3})
    # Refused for another reason: a value beyond float32 first; its row's null still counts.
    beyond = [[1e39, None, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    flower.refused(
        lambda: flower.v2([{**x, "datatype": "FP64", "shape": [2, 4], "data": beyond}]),
        422,
        f"input x: feature {names[0]} has the value 1e+39, beyond the float32 range the model "
        f"takes (element 0); {MISSING_TAIL}",
        {("values", names[1], "null"): 1, ("refused", "out_of_range"): 2},
    )
    flower.refused(
        lambda: flower.v2([{**x, "datatype": "BOOL", "shape": [1, 4], "data": [True] * 4}]),
        422,
        f"input x: feature {names[0]} is numeric; send it as FP32, not BOOL",
        {("refused", "bool"): 1},
    )
    flower.refused(
        lambda: flower.v1([["abc", 1, 2, 3], [None, 1, 2, 3]]),
        422,
        f"instances: feature {names[0]} is numeric; send numbers",
        {("values", names[0], "null"): 1, ("refused", "not_a_number"): 2},
    )


def test_structural_refusals_count_nothing(wire: Any, iris: Artifacts) -> None:
    flower = wire(iris, "iris")
    names = [f["name"] for f in iris.features]
    flower.refused(
        lambda: flower.v2([{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [None] * 3}]),
        422,
        f"input x: 3 columns, the model takes 4 features ({', '.join(names)})",
        {},
    )
    per_feature = [
        {"name": n, "datatype": "FP32", "shape": [1], "data": [None]} for n in names[:3]
    ] + [{"name": "other", "datatype": "FP32", "shape": [1], "data": [None]}]
    flower.refused(
        lambda: flower.v2(per_feature),
        422,
        f"unknown inputs ['other']; the model takes {sorted(names)}",
        {},
    )
    wide = [{"name": n, "datatype": "FP32", "shape": [1, 2], "data": [[None, 1.0]]} for n in names]
    flower.refused(
        lambda: flower.v2(wide),
        400,
        f"input {names[0]}: shape must be [rows] or [rows, 1]",
        {},
    )
    flower.refused(lambda: flower.v1([[None, 1]]), 400, _v1_shape(names), {})
    unknown = pb.ModelInferRequest(model_name="iris")
    for name in [*names[:3], "other"]:
        tensor = unknown.inputs.add(name=name, datatype="FP32", shape=[1])
        tensor.contents.fp32_contents.append(NAN)
    flower.grpc_refused(unknown, f"unknown inputs ['other']; the model takes {sorted(names)}", {})


def _v1_shape(names: list[str]) -> str:
    return (
        f"each instance must be a list of {len(names)} values ({', '.join(names)}) or an object "
        "keyed by feature"
    )


def test_a_category_that_is_infinite_and_an_answer_that_is_not_finite_are_counted(
    wire: Any, shops: Artifacts, diabetes: Artifacts
) -> None:
    shop = wire(shops, "shops")
    shop.refused(
        lambda: shop.binary(
            [
                ("city", "FP32", [2], np.array([3.0, math.inf], dtype=np.float32).tobytes()),
                ("spend", "FP32", [2], [1.0, None]),
            ]
        ),
        422,
        "input city: feature city has the value inf, not a category",
        {("values", "spend", "null"): 1, ("refused", "not_a_category"): 2},
    )
    regressor = wire(diabetes, "diabetes")
    width = len(diabetes.features)
    huge = {"name": "x", "datatype": "FP32", "shape": [1, width], "data": [[3e38] * width]}
    regressor.refused(
        lambda: regressor.v2([huge]),
        422,
        "the model's output is not finite for these inputs (values beyond what it was trained "
        "on); nothing was answered",
        {("refused", "non_finite_output"): 1},
    )
