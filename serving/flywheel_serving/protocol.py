"""The REST data layer: Open Inference Protocol v2 (and v1 `:predict`) bodies in and out.

A v2 body is JSON, or JSON followed by raw tensor bytes (the binary tensor data extension: the
`Inference-Header-Content-Length` header gives the JSON's length, and each input with a
`binary_data_size` parameter takes that many of the bytes that follow, in input order). Either
way the tensors are decoded and checked by :mod:`.tensors` and matched with the model by
:mod:`.signature`. Outputs come back as JSON `data`, or as raw bytes after the JSON when the
client asks (`"binary_data": true` on an output, `"binary_data_output": true` on the request).
Everything a client can get wrong becomes a :class:`~.errors.ServingError` with its status: 400
for a malformed body, 422 for a well-formed body the model cannot take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from flywheel_serving import names
from flywheel_serving.errors import BadRequest, Unprocessable
from flywheel_serving.model import Inputs, Model, Prediction
from flywheel_serving.signature import (
    Output,
    Refused,
    RequestedOutput,
    assemble,
    check_requested,
    column_for,
    refusing,
    to_inputs,
)
from flywheel_serving.tensors import Tensor, check_header, from_json, from_raw, to_raw

HEADER_LENGTH = b"inference-header-content-length"
"""The binary tensor data extension's header (lower case, as ASGI hands headers over)."""


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request."""

    id: str | None
    inputs: Inputs
    outputs: list[RequestedOutput] | None
    parameters: dict[str, Any] | None
    binary_output: bool = False
    """`binary_data_output`: every output not asked for otherwise comes back as raw bytes."""

    @property
    def rows(self) -> int:
        """How many rows the request holds."""
        return self.inputs.rows


def loads(body: bytes | memoryview) -> Any:
    """The JSON value of a body; 400 when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None


def split_binary(body: bytes, header_length: bytes | None) -> tuple[bytes | memoryview, memoryview]:
    """(JSON part, binary part) of a body; the whole body is JSON without the header."""
    if header_length is None:
        return body, memoryview(b"")
    if not header_length.isdigit() or int(header_length) > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length.decode(errors='replace')!r} is not "
            f"a length within the {len(body)}-byte body"
        )
    view = memoryview(body)
    return view[: int(header_length)], view[int(header_length) :]


def decode_infer(body: bytes, model: Model, header_length: bytes | None = None) -> InferRequest:
    """An OIP v2 inference request: one 2-D tensor, or one tensor per feature."""
    document, binary = split_binary(body, header_length)
    request = loads(document)
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object with `inputs`")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("`inputs` must be a non-empty list of tensors")
    tensors = _tensors(inputs, binary)
    decoded = to_inputs(tensors, model)
    parameters = _parameters(request.get("parameters"), "`parameters`")
    binary_output = _flag(parameters, "binary_data_output", "`parameters`")
    wanted = _outputs(request.get("outputs"))
    check_requested(wanted, model)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("`id` must be a string")
    return InferRequest(request_id, decoded, wanted, parameters, binary_output)


def _tensors(inputs: list[Any], binary: memoryview) -> list[Tensor]:
    tensors = []
    offset = 0
    for position, raw in enumerate(inputs):
        where = f"inputs[{position}]"
        if not isinstance(raw, dict):
            raise BadRequest(f"{where} must be an object")
        name, datatype, shape = check_header(
            raw.get("name"), raw.get("datatype"), raw.get("shape"), where
        )
        parameters = _parameters(raw.get("parameters"), f"input {name}: parameters")
        size = parameters.get("binary_data_size") if parameters else None
        if size is None:
            if "data" not in raw:
                raise BadRequest(f"input {name}: no `data` and no binary_data_size")
            tensors.append(from_json(name, datatype, shape, raw["data"]))
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BadRequest(f"input {name}: binary_data_size must be a non-negative integer")
        if "data" in raw:
            raise BadRequest(f"input {name}: both `data` and binary_data_size")
        if offset + size > len(binary):
            raise BadRequest(
                f"input {name}: binary_data_size {size} runs past the {len(binary)} binary bytes"
            )
        tensors.append(from_raw(name, datatype, shape, binary[offset : offset + size]))
        offset += size
    if offset != len(binary):
        raise BadRequest(
            f"{len(binary) - offset} bytes of binary data follow the JSON that no input claims"
        )
    return tensors


def _parameters(raw: Any, where: str) -> dict[str, Any] | None:
    """Parameters: an object of booleans, numbers and strings (the protocol's `$parameter`)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise BadRequest(f"{where} must be an object")
    for key, value in raw.items():
        if not isinstance(value, (bool, int, float, str)):
            raise BadRequest(f"{where}.{key} must be a boolean, a number or a string")
    return raw


def _flag(parameters: dict[str, Any] | None, key: str, where: str) -> bool:
    value = (parameters or {}).get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{where}.{key} must be true or false")
    return value


def _outputs(raw: Any) -> list[RequestedOutput] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in raw
    ):
        raise BadRequest('`outputs` must be a list of {"name": ...}')
    wanted = []
    for output in raw:
        where = f"output {output['name']}: parameters"
        parameters = _parameters(output.get("parameters"), where)
        if parameters and "classification" in parameters:
            raise BadRequest(f"{where}.classification is not supported; ask for the outputs")
        wanted.append(RequestedOutput(output["name"], _flag(parameters, "binary_data", where)))
    return wanted


def encode_infer(
    model_name: str,
    model_version: str,
    request: InferRequest,
    outputs: Sequence[Output],
) -> tuple[bytes, int | None]:
    """The OIP v2 response, and the JSON part's length when raw output bytes follow it."""
    tensors: list[dict[str, Any]] = []
    binary: list[bytes] = []
    for output in outputs:
        tensor: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": output.shape,
        }
        if output.binary:
            raw = to_raw(output.datatype, output.array)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        elif output.datatype == "BYTES":
            data = output.array.reshape(-1).tolist()
            tensor["data"] = data if not data or isinstance(data[0], str) else list(map(str, data))
        else:
            tensor["data"] = output.array.reshape(-1)  # float32: orjson writes it natively
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    if request.parameters:
        shown = {k: v for k, v in request.parameters.items() if k != "binary_data_output"}
        if shown:
            response["parameters"] = shown
    response["outputs"] = tensors
    document = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not binary:
        return document, None
    return b"".join([document, *binary]), len(document)


def decode_v1(body: bytes, model: Model) -> InferRequest:
    """`{"instances": [[...], ...]}` (rows in feature order) or `[{"feature": value}, ...]`."""
    request = loads(body)
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest('the body must be {"instances": [...]} with at least one row')
    order = model.order
    by_name = {f.name: f for f in model.features}
    raw, lacking = _v1_columns(instances, order)
    columns = {}
    with refusing(len(instances), lambda: raw, model.numeric):
        if lacking:
            raise Refused(f"instances lack features {lacking}", names.REFUSED_MISSING)
        for name in order:
            feature = by_name[name]
            values = raw[name]
            if feature.type == "numeric" and not all(_is_number(v) or v is None for v in values):
                raise Refused(
                    f"instances: feature {name} is numeric; send numbers",
                    names.REFUSED_NOT_A_NUMBER,
                )
            datatype = "FP64" if feature.type == "numeric" else "BYTES"
            tensor = from_json("instances", datatype, (len(values),), values)
            columns[name] = column_for(feature, tensor.values, tensor)
    inputs = assemble(columns, len(instances), model)
    return InferRequest(None, inputs, None, None)


def _v1_columns(instances: list[Any], order: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    """Each feature's values (None where an instance lacks it) and the features some instance
    lacks; 400 when the instances are neither all lists of every feature nor all objects."""
    if all(isinstance(i, dict) for i in instances):
        lacking = sorted({n for i in instances for n in order if n not in i})
        return {n: [i.get(n) for i in instances] for n in order}, lacking
    if all(isinstance(i, list) and len(i) == len(order) for i in instances):
        return {n: [row[p] for row in instances] for p, n in enumerate(order)}, []
    raise BadRequest(
        f"each instance must be a list of {len(order)} values ({', '.join(order)}) or an "
        "object keyed by feature"
    )


def _finite(value: Any) -> bool:
    """A number that is finite as a float64 (an integer beyond it is not)."""
    if not _is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def encode_v1(prediction: Prediction) -> bytes:
    """`{"predictions": [...]}`: labels (classifiers) or values (regressors)."""
    if prediction.labels is not None:
        return orjson.dumps({"predictions": [str(v) for v in prediction.labels.tolist()]})
    assert prediction.values is not None
    return orjson.dumps({"predictions": prediction.values.tolist()})


def decode_feedback(body: bytes, classifier: bool) -> tuple[list[Any], list[Any]]:
    """(predictions, true labels) from one item, a batch, or a list of items."""
    request = loads(body)
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object")
    if "items" in request:
        items = request["items"]
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise BadRequest('`items` must be a list of {"prediction", "label"} objects')
        pairs = [(i.get("prediction"), i.get("label")) for i in items]
        predicted, actual = [p for p, _ in pairs], [a for _, a in pairs]
    elif "predictions" in request or "labels" in request:
        given, truth = request.get("predictions"), request.get("labels")
        if not isinstance(given, list) or not isinstance(truth, list):
            raise BadRequest("`predictions` and `labels` must be lists")
        predicted, actual = given, truth
    else:
        predicted, actual = [request.get("prediction")], [request.get("label")]
    if not actual or len(predicted) != len(actual):
        raise BadRequest("feedback needs as many predictions as labels, at least one")
    for value in (*predicted, *actual):
        if value is None or isinstance(value, (list, dict)):
            raise Unprocessable("every prediction and label must be a scalar (not null)")
        if not classifier and not _finite(value):
            raise Unprocessable("a regressor's predictions and labels must be finite numbers")
    return predicted, actual
