"""The data layer: Open Inference Protocol v2 (and v1 `:predict`) bodies in and out.

Requests are decoded once into :class:`~.model.Inputs` (one float32 matrix of the numeric
features, one array per categorical feature), checked against the model's signature; the common
case, one numeric 2-D tensor, takes a short path with a single conversion. Everything a client
can get wrong becomes a :class:`~.errors.ServingError` with its status: 400 for a malformed body
(JSON, shapes, datatypes), 422 for a well-formed body the model cannot take (unknown or missing
features, missing numeric values).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from flywheel_serving.errors import BadRequest, Unprocessable
from flywheel_serving.model import Feature, Inputs, Model, Prediction

NUMERIC_TYPES = {
    "FP16",
    "FP32",
    "FP64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "BOOL",
}
DATATYPES = NUMERIC_TYPES | {"BYTES"}
Columns = dict[str, np.ndarray[Any, Any]]


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request."""

    id: str | None
    inputs: Inputs
    outputs: list[str] | None
    parameters: dict[str, Any] | None

    @property
    def rows(self) -> int:
        """How many rows the request holds."""
        return self.inputs.rows


def loads(body: bytes) -> Any:
    """The JSON value of a body; 400 when it is not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise BadRequest(f"the body is not valid JSON: {error}") from None


def decode_infer(body: bytes, model: Model) -> InferRequest:
    """An OIP v2 inference request: one 2-D tensor, or one tensor per feature."""
    request = loads(body)
    if not isinstance(request, dict):
        raise BadRequest("the body must be a JSON object with `inputs`")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise BadRequest("`inputs` must be a non-empty list of tensors")
    tensors = [_tensor(t, i) for i, t in enumerate(inputs)]
    by_name = {f.name: f for f in model.features}
    first = tensors[0]
    if len(tensors) == 1 and (
        first[0] not in by_name or (len(first[1]) == 2 and len(model.features) > 1)
    ):
        decoded = _matrix(first, model)
    else:
        decoded = _assemble(_per_feature(tensors, by_name), model)
    wanted = _outputs(request.get("outputs"), model.output_names)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadRequest("`id` must be a string")
    parameters = request.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise BadRequest("`parameters` must be an object")
    return InferRequest(request_id, decoded, wanted, parameters)


def _assemble(columns: tuple[Columns, int], model: Model) -> Inputs:
    """Validated columns as model inputs."""
    values, rows = columns
    numeric = (
        np.stack([values[n] for n in model.numeric], axis=1)
        if model.numeric
        else np.zeros((rows, 0), dtype=np.float32)
    )
    categorical = {f.name: values[f.name] for f in model.features if f.type == "categorical"}
    return Inputs(numeric, categorical, rows)


def _tensor(raw: Any, position: int) -> tuple[str, list[int], str, Any]:
    if not isinstance(raw, dict):
        raise BadRequest(f"inputs[{position}] must be an object")
    name, shape, datatype, data = (raw.get(k) for k in ("name", "shape", "datatype", "data"))
    if not isinstance(name, str) or not name:
        raise BadRequest(f"inputs[{position}].name must be a non-empty string")
    if (
        not isinstance(shape, list)
        or not shape
        or len(shape) > 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise BadRequest(f"input {name}: shape must be [rows] or [rows, columns]")
    if datatype not in DATATYPES:
        raise BadRequest(f"input {name}: datatype {datatype!r} is not one of {sorted(DATATYPES)}")
    if not isinstance(data, list):
        raise BadRequest(f"input {name}: data must be a list")
    return name, shape, str(datatype), data


def _values(name: str, shape: list[int], datatype: str, data: list[Any]) -> np.ndarray[Any, Any]:
    """The tensor's elements, row-major, checked against its shape."""
    size = math.prod(shape)
    if datatype == "BYTES":
        flat = _flatten(data)
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
    else:
        try:
            array = np.asarray(data, dtype=np.float64).reshape(-1)
        except (ValueError, TypeError):
            raise BadRequest(f"input {name}: data is not a (nested) list of numbers") from None
    if array.size != size:
        raise BadRequest(f"input {name}: {array.size} values do not fill shape {shape}")
    if size == 0:
        raise BadRequest(f"input {name}: no rows")
    return array


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            if isinstance(item, dict):
                raise BadRequest("BYTES data must hold strings, numbers or null")
            flat.append(item)
        else:
            stack.pop()
    return flat


def _column(feature: Feature, values: np.ndarray[Any, Any], where: str) -> np.ndarray[Any, Any]:
    """A feature's column in the graph's type; missing numeric values are refused."""
    if feature.type == "categorical":
        if values.dtype != object:
            # Integer codes arrive as numbers: compare them as the baseline does, as text.
            return np.array(
                [
                    None if math.isnan(v) else (str(int(v)) if v.is_integer() else str(v))
                    for v in values.tolist()
                ],
                dtype=object,
            )
        return values
    if values.dtype == object:
        try:
            values = np.array([math.nan if v is None else float(v) for v in values.tolist()])
        except (TypeError, ValueError):
            raise Unprocessable(f"{where}: feature {feature.name} is numeric") from None
    if np.isnan(values).any():
        row = int(np.flatnonzero(np.isnan(values))[0])
        raise Unprocessable(
            f"{where}: feature {feature.name} has a missing or non-finite value at row {row}; "
            "the model was trained without missing values"
        )
    return values.astype(np.float32)


def _matrix(tensor: tuple[str, list[int], str, Any], model: Model) -> Inputs:
    name, shape, datatype, data = tensor
    order = model.order
    width = shape[1] if len(shape) == 2 else 1
    if width != len(order):
        raise Unprocessable(
            f"input {name}: {width} columns, the model takes {len(order)} features "
            f"({', '.join(order)})"
        )
    if datatype != "BYTES" and len(model.numeric) == len(order):
        # The short path: every feature numeric, one conversion. JSON has no NaN (the parser
        # refuses it), so a NaN after the conversion can only be a null: one vectorised check
        # instead of a Python scan of every value.
        try:
            matrix = np.asarray(data, dtype=np.float32)
        except (ValueError, TypeError):
            raise BadRequest(f"input {name}: data is not a (nested) list of numbers") from None
        if matrix.size != shape[0] * width:
            raise BadRequest(f"input {name}: {matrix.size} values do not fill shape {shape}")
        if matrix.size == 0:
            raise BadRequest(f"input {name}: no rows")
        missing = np.isnan(matrix)
        if missing.any():
            position = int(np.flatnonzero(missing)[0])
            raise Unprocessable(
                f"input {name}: feature {order[position % width]} has a missing value at row "
                f"{position // width}; the model was trained without missing values"
            )
        return Inputs(matrix.reshape(shape[0], width), {}, shape[0])
    if datatype != "BYTES":
        raise Unprocessable(
            f"input {name}: the model has categorical features; send a BYTES tensor or one "
            "tensor per feature"
        )
    values = _values(name, shape, datatype, data).reshape(shape[0], width)
    by_name = {f.name: f for f in model.features}
    columns = {
        column: _column(by_name[column], values[:, i], f"input {name}")
        for i, column in enumerate(order)
    }
    return _assemble((columns, shape[0]), model)


def _per_feature(
    tensors: list[tuple[str, list[int], str, Any]], by_name: dict[str, Feature]
) -> tuple[Columns, int]:
    unknown = [t[0] for t in tensors if t[0] not in by_name]
    if unknown:
        raise Unprocessable(f"unknown inputs {unknown}; the model takes {sorted(by_name)}")
    missing = sorted(set(by_name) - {t[0] for t in tensors})
    if missing:
        raise Unprocessable(f"missing inputs for features {missing}")
    if len(tensors) != len(by_name):
        raise BadRequest("each feature must be sent once")
    rows = {t[1][0] for t in tensors}
    if len(rows) != 1:
        raise BadRequest(f"inputs disagree on the number of rows: {sorted(rows)}")
    columns = {}
    for name, shape, datatype, data in tensors:
        if len(shape) == 2 and shape[1] != 1:
            raise BadRequest(f"input {name}: shape must be [rows] or [rows, 1]")
        columns[name] = _column(
            by_name[name], _values(name, shape, datatype, data), f"input {name}"
        )
    return columns, rows.pop()


def _outputs(raw: Any, available: Sequence[str]) -> list[str] | None:
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(o, dict) and "name" in o for o in raw):
        raise BadRequest('`outputs` must be a list of {"name": ...}')
    names = [str(o["name"]) for o in raw]
    unknown = [n for n in names if n not in available]
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; the model has {list(available)}")
    return names


def encode_infer(
    model_name: str,
    model_version: str,
    request: InferRequest,
    prediction: Prediction,
    output_names: Sequence[str],
) -> bytes:
    """The OIP v2 response."""
    tensors: list[dict[str, Any]] = []
    wanted = request.outputs or list(output_names)
    produced: dict[str, tuple[str, list[int], np.ndarray[Any, Any]] | None]
    if prediction.labels is not None:
        produced = {
            output_names[0]: ("BYTES", [request.rows], prediction.labels),
            output_names[1]: (
                "FP32",
                list(prediction.probabilities.shape),
                prediction.probabilities,
            )
            if prediction.probabilities is not None
            else None,
        }
    else:
        assert prediction.values is not None
        produced = {output_names[0]: ("FP32", [request.rows, 1], prediction.values)}
    for name in wanted:
        entry = produced.get(name)
        if entry is None:
            continue
        datatype, shape, array = entry
        data: Any
        if datatype == "BYTES":
            data = array.reshape(-1).tolist()
            if data and not isinstance(data[0], str):
                data = [str(v) for v in data]
        else:
            data = array.reshape(-1)  # a contiguous float32 array: orjson writes it natively
        tensors.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        response["id"] = request.id
    if request.parameters:
        response["parameters"] = request.parameters
    response["outputs"] = tensors
    return orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)


def decode_v1(body: bytes, model: Model) -> InferRequest:
    """`{"instances": [[...], ...]}` (rows in feature order) or `[{"feature": value}, ...]`."""
    request = loads(body)
    instances = request.get("instances") if isinstance(request, dict) else None
    if not isinstance(instances, list) or not instances:
        raise BadRequest('the body must be {"instances": [...]} with at least one row')
    order = model.order
    by_name = {f.name: f for f in model.features}
    if all(isinstance(i, dict) for i in instances):
        missing = sorted({n for i in instances for n in order if n not in i})
        if missing:
            raise Unprocessable(f"instances lack features {missing}")
        rows = [[i[n] for n in order] for i in instances]
    elif all(isinstance(i, list) and len(i) == len(order) for i in instances):
        rows = instances
    else:
        raise BadRequest(
            f"each instance must be a list of {len(order)} values ({', '.join(order)}) or an "
            "object keyed by feature"
        )
    columns = {}
    for position, name in enumerate(order):
        raw = [row[position] for row in rows]
        if any(isinstance(v, (list, dict)) for v in raw):
            raise BadRequest(f"feature {name}: values must be scalars")
        values = np.empty(len(raw), dtype=object)
        values[:] = raw
        if by_name[name].type == "numeric" and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw
        ):
            values = np.asarray(raw, dtype=np.float64)
        columns[name] = _column(by_name[name], values, "instances")
    return InferRequest(None, _assemble((columns, len(rows)), model), None, None)


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
        if not classifier and (isinstance(value, (str, bool)) or not math.isfinite(value)):
            raise Unprocessable("a regressor's predictions and labels must be finite numbers")
    return predicted, actual
