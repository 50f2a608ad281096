"""Property-based fuzz of the REST data layer over real HTTP (hypothesis).

At least 2,000 generated requests per endpoint family (v2 infer: half JSON bodies, half binary
extension bodies; v2 feedback: to a classifier and a regressor; v1 `:predict`), each family
against ONE running server. A request starts well formed (right-typed values in a matrix or one
tensor per feature, outputs, parameters, an id) and is then spoiled: an element out of range, of
another type or null; a shape the values do not fill; 0 to 3 places of the document removed,
repeated, wrapped in a list or given a value of the wrong type (lists, objects, unknown datatype
strings, negative, huge or boolean dimensions, 10**30, 1e39, -1e308, ...); the JSON text cut,
spliced or given NaN, Infinity, 1e999 or 400 digits; raw tensor bytes cut, padded, random or
with lying BYTES lengths; the Inference-Header-Content-Length wrong. About a third stay valid.

Every answer must be a 2xx or a 4xx (never a 5xx, never a dropped connection), a 4xx must be
JSON with an `error`, and a 200 must carry no null and no NaN in its outputs or predictions
(binary answers are parsed part by part). Afterwards the server still answers a known request
as before, no 5xx was counted, and its log holds no `internal error` and no traceback.

`pytest -s` prints how many requests each family sent and the status histogram;
FLYWHEEL_FUZZ_EXAMPLES=20000 makes a longer hunt.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.serving.conftest import Artifacts, Server, ServerFactory
from tests.serving.test_protocol import FEATURES, ROWS

EXAMPLES = int(os.environ.get("FLYWHEEL_FUZZ_EXAMPLES", "2000"))
"""Generated requests per family (at least); raise it for a longer local hunt."""
HEADER = "Inference-Header-Content-Length"
REST_ONLY = {"grpc_port": 0}
"""REST is what is fuzzed here: no gRPC listener."""
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database: a failure prints its reproduction blob instead
    print_blob=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate, Phase.shrink],  # no slow "explain" phase
)


# --- what a request is made of -----------------------------------------------------------------
# Strategies are built once, here: building them inside draws costs more than the requests.

SMALL = st.one_of(st.floats(-10, 10, allow_nan=False, width=32), st.integers(-10, 10))
EXTREME_NUMBERS = [1e39, -1e39, 3.4028235e38, 3.4028236e38, -3.4028235e38, 1e308, -1e308, 5e-324]
EXTREME_NUMBERS += [1.7976931348623157e308, 1e-45, -0.0, 65504.0, 65520.0, 16777217.0]
EXTREME_NUMBERS += [10**30, -(10**30), 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 2**53 + 1]
FLOATS = st.one_of(SMALL, st.sampled_from(EXTREME_NUMBERS), st.floats(allow_nan=False))
INTS = st.one_of(
    st.integers(-10, 300),
    st.integers(-10, 300),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, -129, 128, 65536]),
)
CITIES = [f"city{i}" for i in range(30)]
TEXTS = st.one_of(
    st.sampled_from(
        ["inf", "-inf", "nan", "NaN", "1.5", "1e39", "", "0", "1", "2", " 3", "9" * 40]
    ),
    st.sampled_from(CITIES),
    st.text(max_size=5),
)
SCALARS = st.one_of(st.none(), st.booleans(), FLOATS, INTS, TEXTS)
ANY_JSON = st.one_of(
    SCALARS,
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.text(max_size=3), SCALARS, max_size=2),
    st.lists(st.lists(SCALARS, max_size=2), max_size=2),
)
WEIRD = st.one_of(
    ANY_JSON,
    st.sampled_from(["FP8", "fp32", "BF16", "STRING", "INT128", "FP32 ", "BYTES\x00", "x"]),
    st.sampled_from([[-1, 4], [2**63, 4], [2**64 - 1], [10**12, 4], [2**40], [True, 4], [1.5, 4]]),
    st.sampled_from([[], [0], [0, 4], [1, 4, 1], [[1, 4]], [1, 2**62, 2**62], {"rows": 1}]),
)
"""A value that does not belong where it is put (or, by chance, does)."""
HUGE_SHAPES = [[2**40], [2**62], [2**63 - 1], [2**64 - 1], [10**12, 4], [2**31, 2**31], [2**32, 1]]
SHAPE_SPOILERS = st.sampled_from(
    [*HUGE_SHAPES, [0], [0, 4], [4, 0], [1, 5], [2, 4], [4, 1], [5], [1, 1, 4], [-4], [1, -4]]
)
"""Shapes the values do not fill: huge (more elements than memory holds), empty, off by one."""

FLOAT_TYPES = ["FP32", "FP32", "FP32", "FP64", "FP16"]
INT_TYPES = ["INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"]
NUMPY = {
    d: np.dtype(d.lower().replace("fp", "float")) for d in [*INT_TYPES, "FP16", "FP32", "FP64"]
}
NUMPY["BOOL"] = np.dtype(np.bool_)
COLUMN_TYPES = st.sampled_from([*FLOAT_TYPES, *FLOAT_TYPES, *INT_TYPES, "BYTES", "BOOL"])
"""Datatypes of a per-feature tensor (mostly ones a numeric feature takes)."""
SMALL_TEXT = st.one_of(SMALL.map(str), st.sampled_from(["5.1", "0", "12"]))
JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(FLOAT_TYPES, SMALL),
    **{d: st.integers(0, 100) for d in INT_TYPES},
    "BOOL": st.booleans(),
    "BYTES": SMALL_TEXT,
}
"""JSON elements of each datatype that a numeric feature takes."""
JSON_SPOILERS: dict[str, st.SearchStrategy[Any]] = {
    **{d: st.one_of(st.sampled_from(EXTREME_NUMBERS), st.floats(), SCALARS) for d in FLOAT_TYPES},
    **{d: st.one_of(INTS, SCALARS) for d in INT_TYPES},
    "BOOL": SCALARS,
    "BYTES": st.one_of(TEXTS, SCALARS),
}
"""One element that may not belong: out of range, beyond float32, of another type, null."""
RAW_VALUES: dict[str, st.SearchStrategy[Any]] = {
    **{d: st.integers(0, 100) for d in INT_TYPES},
    **dict.fromkeys(FLOAT_TYPES, SMALL),
    "BOOL": st.integers(0, 1),
    "BYTES": SMALL_TEXT.map(str.encode),
}
"""Elements of raw (binary extension) tensors that a numeric feature takes."""
RAW_SPOILERS: dict[str, st.SearchStrategy[Any]] = {
    **{d: st.integers(int(np.iinfo(NUMPY[d]).min), int(np.iinfo(NUMPY[d]).max)) for d in INT_TYPES},
    "FP16": st.floats(width=16),  # NaN and inf bit patterns included
    "FP32": st.floats(width=32),
    "FP64": st.floats(),
    "BOOL": st.integers(2, 255),  # not a BOOL byte
    "BYTES": st.one_of(
        TEXTS.map(str.encode),
        st.sampled_from([b"city0", "cit\u00e9".encode(), b"", b"\xff\xfe", b"nan", b"1e39"]),
        st.binary(max_size=5),
    ),
}


def _encode(datatype: str, values: list[Any]) -> bytes:
    """Raw little-endian bytes of values, as the binary tensor data extension lays them out."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(v)) + v for v in values)
    if datatype == "BOOL":
        return bytes(values)
    with np.errstate(over="ignore", invalid="ignore"):  # a float64 beyond FP16 is inf: fine
        return np.array(values).astype(NUMPY[datatype].newbyteorder("<")).tobytes()


@functools.cache
def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    return st.integers(low, high)


@functools.cache
def _exactly(elements: st.SearchStrategy[Any], count: int) -> st.SearchStrategy[list[Any]]:
    return st.lists(elements, min_size=count, max_size=count)


def _pick(draw: st.DrawFn, low: int, high: int) -> int:
    """An integer in [low, high] (strategies are made once: making them costs more than drawing).

    Hypothesis leans hard towards the lower bound (0 comes up ~15% of the time in [0, 31]), so
    rare choices sit at the upper end and positions are counted from the end."""
    return draw(_integers(low, high))


def _one_in(draw: st.DrawFn, n: int) -> bool:
    """True about once in n draws (the upper bound: hypothesis does not favour it)."""
    return _pick(draw, 1, n) == n


MATRIX_TYPES = [*FLOAT_TYPES, *FLOAT_TYPES, *INT_TYPES, "BYTES"]


def _tensors(
    draw: st.DrawFn, features: tuple[str, ...], binary: bool
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """Well-formed input tensors (one matrix, or one per feature) with right-typed values;
    their raw bytes when binary."""
    rows = _pick(draw, 1, 3)
    if _one_in(draw, 2):
        datatype = MATRIX_TYPES[_pick(draw, 0, len(MATRIX_TYPES) - 1)]
        specs = [("x", datatype, [rows, len(features)])]
    else:
        specs = [
            (name, draw(COLUMN_TYPES), [rows, 1] if _one_in(draw, 2) else [rows])
            for name in features
        ]
    inputs, raws = [], []
    for name, datatype, shape in specs:
        count = math.prod(shape)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": shape}
        if _one_in(draw, 10):  # a shape the values do not fill: huge, empty, off by one
            tensor["shape"] = draw(SHAPE_SPOILERS)
        values = draw(_exactly((RAW_VALUES if binary else JSON_VALUES)[datatype], count))
        if _one_in(draw, 4):  # one element that may not belong
            spoiler = (RAW_SPOILERS if binary else JSON_SPOILERS)[datatype]
            values[_pick(draw, 0, count - 1)] = draw(spoiler)
        if binary:
            raw = _encode(datatype, values)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            raws.append(raw)
        else:
            data = values
            if len(shape) == 2 and _one_in(draw, 2):
                data = [data[i : i + shape[1]] for i in range(0, count, shape[1])]  # nested
            tensor["data"] = data
        inputs.append(tensor)
    return inputs, raws


OUTPUT_NAMES = st.sampled_from(["label", "probabilities", "variable"])
OUTPUTS = st.lists(
    st.fixed_dictionaries(
        {"name": OUTPUT_NAMES},
        optional={"parameters": st.fixed_dictionaries({"binary_data": st.booleans()})},
    ),
    max_size=2,
)
PARAMETERS = st.one_of(
    st.fixed_dictionaries({"binary_data_output": st.booleans()}),
    st.dictionaries(st.sampled_from(["note", "priority", "timeout"]), SCALARS, max_size=2),
)
IDS = st.text(max_size=6)


def _envelope(draw: st.DrawFn, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    """A well-formed request document around inputs: outputs, parameters and an id, or not."""
    document: dict[str, Any] = {"inputs": inputs}
    if _one_in(draw, 2):
        document["outputs"] = draw(OUTPUTS)
    if _one_in(draw, 2):
        document["parameters"] = draw(PARAMETERS)
    if _one_in(draw, 4):
        document["id"] = draw(IDS)
    return document


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a JSON document: keys of objects and positions of lists."""
    if not isinstance(value, (dict, list)):
        return []
    found: list[tuple[Any, ...]] = []
    for key, item in value.items() if isinstance(value, dict) else enumerate(value):
        found.append((*prefix, key))
        found += _paths(item, (*prefix, key))
    return found


MUTATIONS = st.sampled_from([0, 0, 1, 1, 1, 1, 2, 3])


def _mutate(draw: st.DrawFn, document: Any) -> Any:
    """The document with 0 to 3 places broken: removed, repeated, wrapped in a list, or given a
    value that does not belong there; now and then replaced whole."""
    if _one_in(draw, 40):
        return draw(ANY_JSON)
    document = copy.deepcopy(document)
    for _ in range(draw(MUTATIONS)):
        paths = _paths(document)
        if not paths:
            break
        *parents, key = paths[-1 - _pick(draw, 0, len(paths) - 1)]  # leaves first
        parent = document
        for step in parents:
            parent = parent[step]
        how = _pick(draw, 0, 9)
        if how == 0:
            del parent[key]
        elif how == 1 and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif how == 2:
            parent[key] = [parent[key]]
        else:
            parent[key] = copy.deepcopy(draw(WEIRD))  # sampled values are shared objects
    return document


MANGLE_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"9" * 400, b"\xff"]
SPLICES = st.binary(min_size=1, max_size=3)


def _mangle(draw: st.DrawFn, body: bytes) -> bytes:
    """Usually the body; one time in eight, broken JSON: cut short, spliced with bytes, or with a
    number JSON cannot hold (NaN, Infinity, 1e999, 400 digits)."""
    kind = 31 - _pick(draw, 0, 31)
    if kind >= 4 or not body:
        return body
    at = len(body) - _pick(draw, 0, len(body))  # near the end, mostly
    if kind == 0:
        return body[:at]
    if kind == 1:
        return body[:at] + draw(SPLICES) + body[at:]
    token = MANGLE_TOKENS[_pick(draw, 0, len(MANGLE_TOKENS) - 1)]
    for number in (b"5.1", b"1.0", b"0", b"1", b"2"):
        if kind == 2 and number in body:
            return body.replace(number, token, 1)
    return body[:at] + token + body[at:]


@dataclass(frozen=True)
class Request:
    """One generated request (its repr is the reproducer hypothesis prints on a failure)."""

    path: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


JSON_HEADER_VALUES = ["0", "1", "-1", "x", "99999999"]


@st.composite
def json_infer_requests(draw: st.DrawFn, model: str, features: tuple[str, ...]) -> Request:
    inputs, _ = _tensors(draw, features, binary=False)
    document = _mutate(draw, _envelope(draw, inputs))
    body = _mangle(draw, json.dumps(document).encode())
    headers = {"content-type": "application/json"}
    if _one_in(draw, 30):  # the binary extension's header on a JSON body
        values = [*JSON_HEADER_VALUES, str(len(body))]
        headers[HEADER] = values[_pick(draw, 0, len(values) - 1)]
    return Request(f"/v2/models/{model}/infer", body, headers)


HEADER_VALUES = ["0", "-1", "", "x", "1e3", "+12", "0x10", "12.0", "1_0", "9" * 30, str(2**64)]
RANDOM_BYTES = st.binary(max_size=24)
TAILS = st.binary(min_size=1, max_size=8)
CONTENT_TYPES = ["application/octet-stream"] * 3 + ["application/json"]


@st.composite
def binary_infer_requests(draw: st.DrawFn, model: str, features: tuple[str, ...]) -> Request:
    inputs, raws = _tensors(draw, features, binary=True)
    document = _mutate(draw, _envelope(draw, inputs))
    head = json.dumps(document).encode()
    if _one_in(draw, 6):
        head = _mangle(draw, head)
    if _one_in(draw, 6) and raws:  # one tensor's bytes: cut, padded, random, or lying
        at = _pick(draw, 0, len(raws) - 1)
        how = _pick(draw, 0, 3)
        if how == 0:
            raws[at] = raws[at][:-1]
        elif how == 1:
            raws[at] += b"\0"
        elif how == 2:
            raws[at] = draw(RANDOM_BYTES)
        else:
            raws[at] = struct.pack("<I", 2**32 - 1) + raws[at]  # a BYTES length that lies
    body = head + b"".join(raws)
    if _one_in(draw, 10):
        body += draw(TAILS)
    header = str(len(head))
    if _one_in(draw, 6):
        values = [*HEADER_VALUES, str(len(body)), str(len(body) + 1), "000" + header]
        values += [str(len(head) + d) for d in (-3, -2, -1, 1, 2, 3)]
        header = values[_pick(draw, 0, len(values) - 1)]
    content_type = CONTENT_TYPES[_pick(draw, 0, len(CONTENT_TYPES) - 1)]
    return Request(
        f"/v2/models/{model}/infer", body, {HEADER: header, "content-type": content_type}
    )


# --- feedback and v1 ---------------------------------------------------------------------------

FEEDBACK_VALUES = st.one_of(
    st.sampled_from(["0", "1", "2"]),
    st.integers(0, 2),
    st.floats(0, 350, allow_nan=False),
    st.floats(0, 350, allow_nan=False),
    FLOATS,
    INTS,
    st.sampled_from(["setosa", "__unseen__", "", "150.0", 10**400]),
)
"""Values of feedback: classes (any scalar counts for a classifier), numbers (a regressor's
labels), extremes whose errors overflow float64, and text."""


@st.composite
def feedback_bodies(draw: st.DrawFn) -> bytes:
    form = _pick(draw, 0, 2)
    document: dict[str, Any]
    if form == 0:
        document = {"prediction": draw(FEEDBACK_VALUES), "label": draw(FEEDBACK_VALUES)}
    else:
        count = _pick(draw, 1, 4)
        predictions = draw(_exactly(FEEDBACK_VALUES, count))
        labels = draw(_exactly(FEEDBACK_VALUES, count))
        if form == 1:
            document = {"predictions": predictions, "labels": labels}
        else:
            pairs = zip(predictions, labels, strict=True)
            document = {"items": [{"prediction": p, "label": a} for p, a in pairs]}
    if _one_in(draw, 5):
        document["id"] = draw(IDS)
    return _mangle(draw, json.dumps(_mutate(draw, document)).encode())


@st.composite
def v1_requests(draw: st.DrawFn, model: str, features: tuple[str, ...]) -> Request:
    rows = _pick(draw, 1, 3)
    instances: list[Any] = draw(_exactly(_exactly(SMALL, len(features)), rows))
    if _one_in(draw, 3):  # one value that may not belong
        row = instances[_pick(draw, 0, rows - 1)]
        row[_pick(draw, 0, len(row) - 1)] = draw(JSON_SPOILERS["FP32"])
    if _one_in(draw, 2):
        instances = [dict(zip(features, row, strict=True)) for row in instances]
    document = _mutate(draw, {"instances": instances})
    body = _mangle(draw, json.dumps(document).encode())
    return Request(f"/v1/models/{model}:predict", body, {"content-type": "application/json"})


# --- checking answers --------------------------------------------------------------------------


def _no_null(value: Any, where: str) -> None:
    if value is None:
        raise AssertionError(f"a null in a 200 at {where}")
    if isinstance(value, float):
        assert math.isfinite(value), f"{value} in a 200 at {where}"
    if isinstance(value, list):
        for position, item in enumerate(value):
            _no_null(item, f"{where}[{position}]")
    if isinstance(value, dict):
        for key, item in value.items():
            _no_null(item, f"{where}.{key}")


def _check_outputs(document: Any, content: bytes, offset: int) -> int:
    """An OIP v2 answer's outputs: no null, data filling each shape, raw parts finite."""
    assert isinstance(document, dict), document
    # The outputs (not the echoed `id` and `parameters`: those are the client's own values).
    outputs = document["outputs"]
    assert isinstance(outputs, list), document
    assert outputs, document
    _no_null(outputs, "outputs")
    for output in outputs:
        shape = output["shape"]
        count = math.prod(shape)
        size = (output.get("parameters") or {}).get("binary_data_size")
        if size is None:
            assert len(output["data"]) == count, output
            continue
        raw = content[offset : offset + size]
        assert len(raw) == size, ("binary part cut short", output)
        offset += size
        if output["datatype"] == "BYTES":
            values, at = [], 0
            while at < len(raw):
                (length,) = struct.unpack_from("<I", raw, at)
                values.append(raw[at + 4 : at + 4 + length].decode())
                at += 4 + length
            assert at == len(raw), output
            assert len(values) == count, output
        else:
            array = np.frombuffer(raw, dtype=NUMPY[output["datatype"]])
            assert array.size == count, output
            assert np.isfinite(array).all(), f"NaN or inf in the raw part of {output['name']}"
    return offset


def check_answer(answer: httpx.Response, kind: str) -> None:
    """The properties every answer has, whatever was sent."""
    status = answer.status_code
    assert 200 <= status < 300 or 400 <= status < 500, f"{status}: {answer.text[:500]}"
    content_type = answer.headers.get("content-type", "")
    if status >= 400:
        assert content_type == "application/json", (status, content_type)
        error = orjson.loads(answer.content)
        assert isinstance(error, dict), error
        assert isinstance(error.get("error"), str), error
        assert error["error"], error
        return
    if content_type == "application/octet-stream":
        length = int(answer.headers[HEADER])
        document = orjson.loads(answer.content[:length])  # orjson refuses NaN: so must we
        assert _check_outputs(document, answer.content, length) == len(answer.content)
        return
    assert content_type == "application/json", content_type
    document = orjson.loads(answer.content)
    if kind == "infer":
        assert _check_outputs(document, b"", 0) == 0, "binary parts in a JSON answer"
    elif kind == "v1":
        assert isinstance(document["predictions"], list), document
        assert document["predictions"], document
        _no_null(document["predictions"], "predictions")
    else:
        assert isinstance(document.get("accepted"), int), document
        assert document["accepted"] > 0, document


@dataclass
class Tally:
    """Requests sent per family and their statuses (printed at the end)."""

    family: str
    expected: int
    """How many requests the family must have sent (hypothesis runs at least that many)."""
    statuses: Counter[int] = field(default_factory=Counter)
    first_failure: str | None = None

    @property
    def sent(self) -> int:
        return sum(self.statuses.values())

    def __str__(self) -> str:
        histogram = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return f"{self.family}: {self.sent} requests ({histogram})"


def send(http: httpx.Client, tally: Tally, request: Request, kind: str) -> httpx.Response:
    """Send one request and check its answer; the first failure is kept for the report."""
    try:
        answer = http.post(request.path, content=request.body, headers=request.headers)
        tally.statuses[answer.status_code] += 1
        check_answer(answer, kind)
    except (AssertionError, httpx.TransportError, ValueError, KeyError, TypeError) as error:
        if tally.first_failure is None:
            tally.first_failure = f"{type(error).__name__}: {error}\n  request: {request!r}"
        raise
    return answer


@contextmanager
def fuzzing(servers: list[Server], tallies: list[Tally]) -> Iterator[None]:
    """Around a fuzz run: known answers before and after, tallies printed, logs clean."""
    known, errors_before = {}, {}
    for server in servers:
        with server.client() as http:
            known[server.name] = _known(http, server.name)
            # Readiness polls while the model loaded were 503s: only new ones count.
            errors_before[server.name] = _server_errors(http.get("/metrics").text)
    try:
        yield
    finally:
        for tally in tallies:
            print(tally)
            if tally.first_failure:
                print(f"  first failure: {tally.first_failure}")
    for server in servers:
        assert server.process.poll() is None, f"{server.name} exited: {server.output()[-3000:]}"
        with server.client() as http:
            assert http.get("/v2/health/ready").status_code == 200
            assert _known(http, server.name) == known[server.name], "the same answer as before"
            metrics = http.get("/metrics").text
        assert _server_errors(metrics) == errors_before[server.name], "5xx answers counted"
        log = server.output()
        for word in ("internal error", "Traceback"):
            assert word not in log, f"{server.name} logged {word!r}:\n{log[-4000:]}"
    for tally in tallies:
        assert tally.sent >= tally.expected, str(tally)
        # Not all refused: the generators reach the model (a third or so are valid).
        assert tally.statuses[200] >= tally.expected // 20, f"too few valid requests: {tally}"


def _server_errors(metrics: str) -> list[str]:
    """The request counters of 5xx answers in a /metrics text."""
    return [
        line
        for line in metrics.splitlines()
        if line.startswith("flywheel_requests_total") and 'code="5' in line
    ]


def _known(http: httpx.Client, model: str) -> Any:
    width = 4 if model == "iris" else 10
    row = ROWS[0] if model == "iris" else [0.01 * i for i in range(width)]
    body = {"inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": row}]}
    answer = http.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == 200, answer.text
    return answer.json()["outputs"]


# --- the fuzz runs -----------------------------------------------------------------------------


def test_fuzz_v2_infer_json_and_binary(serve: ServerFactory, iris: Artifacts) -> None:
    """The v2 infer family: half JSON bodies, half binary extension bodies."""
    server = serve(iris, "iris", **REST_ONLY)
    half = settings(FUZZ, max_examples=EXAMPLES // 2)
    as_json = Tally("v2 infer, JSON bodies", EXAMPLES // 2)
    binary = Tally("v2 infer, binary extension bodies", EXAMPLES // 2)
    with fuzzing([server], [as_json, binary]), server.client() as http:

        @half
        @given(json_infer_requests("iris", tuple(FEATURES)))
        def json_bodies(request: Request) -> None:
            send(http, as_json, request, "infer")

        @half
        @given(binary_infer_requests("iris", tuple(FEATURES)))
        def binary_bodies(request: Request) -> None:
            send(http, binary, request, "infer")

        json_bodies()
        binary_bodies()


def test_fuzz_v2_feedback(serve: ServerFactory, iris: Artifacts, diabetes: Artifacts) -> None:
    """Each generated body goes to the classifier or to the regressor (whose error sums are
    where an overflow would be): 2,000 between them, a third or more to each."""
    servers = [serve(iris, "iris", **REST_ONLY), serve(diabetes, "diabetes", **REST_ONLY)]
    tallies = [
        Tally(f"v2 feedback, {server.name} ({kind})", EXAMPLES // 10)
        for server, kind in zip(servers, ("classifier", "regressor"), strict=True)
    ]
    with fuzzing(servers, tallies), servers[0].client() as first, servers[1].client() as second:

        @FUZZ
        @given(feedback_bodies(), st.booleans())
        def feedback(body: bytes, regressor: bool) -> None:
            which = int(regressor)
            path = f"/v2/models/{servers[which].name}/feedback"
            request = Request(path, body, {"content-type": "application/json"})
            send((first, second)[which], tallies[which], request, "feedback")

        feedback()
    assert sum(t.sent for t in tallies) >= EXAMPLES


def test_fuzz_v1_predict(serve: ServerFactory, iris: Artifacts) -> None:
    server = serve(iris, "iris", **REST_ONLY)
    tally = Tally("v1 :predict", EXAMPLES)
    with fuzzing([server], [tally]), server.client() as http:

        @FUZZ
        @given(v1_requests("iris", tuple(FEATURES)))
        def predict(request: Request) -> None:
            send(http, tally, request, "v1")

        predict()


def test_a_binary_bytes_tensor_with_a_huge_shape_gets_a_400(
    serve: ServerFactory, iris: Artifacts
) -> None:
    """Found by the fuzz: a binary BYTES input whose shape holds more elements than memory (or
    numpy) can take was a 500 ("internal error: Unable to allocate 8.00 TiB ..."): the element
    array was allocated from the shape before the bytes were counted."""
    server = serve(iris, "iris", **REST_ONLY)
    raw = struct.pack("<I", 5) + b"city0"
    answers = {}
    with server.client() as http:
        for shape in HUGE_SHAPES:
            tensor: dict[str, Any] = {"name": "x", "datatype": "BYTES", "shape": shape}
            tensor["parameters"] = {"binary_data_size": len(raw)}
            head = json.dumps({"inputs": [tensor]}).encode()
            answer = http.post(
                "/v2/models/iris/infer",
                content=head + raw,
                headers={HEADER: str(len(head)), "content-type": "application/octet-stream"},
            )
            answers[str(shape)] = (answer.status_code, answer.text[:160])
        assert http.get("/v2/health/ready").status_code == 200
    wrong = {shape: answer for shape, answer in answers.items() if answer[0] != 400}
    assert not wrong, wrong
    assert "internal error" not in server.output()
