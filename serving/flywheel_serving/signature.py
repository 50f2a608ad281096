"""Decoded tensors against the model's signature: inputs in, outputs out, for every wire.

REST (JSON or binary) and gRPC both hand over :class:`~flywheel_serving.tensors.Tensor` lists;
this module turns them into the model's :class:`~flywheel_serving.model.Inputs` (one 2-D tensor
in the card's feature order, or one tensor per feature), converting each value to the type the
graph takes and refusing (422, naming the input and feature) anything the model cannot take: a
missing value, a number beyond float32, a BOOL for a number. It also picks the requested outputs
and refuses to answer with a value that is not finite, so no 200 ever carries a null.

A refusal of values (not of structure: names, shapes) is a :class:`Refused`, which carries its
reason and, once the rows are known, their number and each feature's missing values among them
(counted with numpy per column of the values as sent), so the server can tell the monitor
before it answers the 422: a rising null rate is never invisible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from flywheel_serving import names
from flywheel_serving.errors import BadRequest, Unprocessable
from flywheel_serving.model import Feature, Inputs, Model, Prediction
from flywheel_serving.tensors import Tensor

logger = logging.getLogger("flywheel_serving")
Columns = dict[str, np.ndarray[Any, Any]]


class Refused(Unprocessable):
    """422 for values: `reason` is one of `names.REFUSE_REASONS`; once the rows are known,
    `rows` is their number and `nulls` each feature's missing values among them (0 rows: not
    known, nothing to count). Its message and status are those of any Unprocessable."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.rows = 0
        self.nulls: dict[str, int] = {}

    def of_rows(self, rows: int, columns: Mapping[str, Any], numeric: Collection[str]) -> Refused:
        """This refusal, for `rows` rows whose values by feature (as sent) are `columns`."""
        self.rows = rows
        self.nulls = count_missing(columns, numeric)
        return self


@contextmanager
def refusing(
    rows: int, columns: Callable[[], Mapping[str, Any]], numeric: Collection[str]
) -> Iterator[None]:
    """A :class:`Refused` raised inside is for these rows (`columns()`: their values by feature,
    as sent, read only then). `rows` 0: the rows are not known, nothing is attached."""
    try:
        yield
    except Refused as refusal:
        if rows and not refusal.rows:
            refusal.of_rows(rows, columns(), numeric)
        raise


def count_missing(columns: Mapping[str, Any], numeric: Collection[str]) -> dict[str, int]:
    """Each feature's missing values (None, NaN; for a numeric feature, text reading "nan" too,
    as :func:`column_for` reads it): one numpy pass per column. Never raises (logged, nothing
    counted): it runs on the way to a 422 that must stay one."""
    try:
        numbers = set(numeric)
        return {name: _missing(values, name in numbers) for name, values in columns.items()}
    except Exception:
        logger.exception("counting the missing values of refused rows failed")
        return {}


def _missing(values: Any, numeric: bool) -> int:
    if isinstance(values, list):  # v1 instances: JSON values (no NaN in JSON)
        return values.count(None)
    if values.dtype.kind == "f":
        return int(np.isnan(values).sum())
    if values.dtype != object:
        return 0
    absent = np.equal(values, np.array(None, dtype=object))
    count = int((absent | np.not_equal(values, values)).sum())  # None, or a float NaN
    if numeric:  # BYTES for a numeric feature: column_for reads "nan" as a missing number
        count += sum(1 for v in values.tolist() if isinstance(v, str) and _nan_text(v))
    return count


def _nan_text(text: str) -> bool:
    return text.strip().lstrip("+-").lower() == "nan"


@dataclass(frozen=True)
class RequestedOutput:
    """An output the client asked for; `binary`: in the binary tensor data extension."""

    name: str
    binary: bool = False


@dataclass(frozen=True)
class Output:
    """One output tensor of an answer."""

    name: str
    datatype: str
    shape: list[int]
    array: np.ndarray[Any, Any]
    binary: bool = False


def to_inputs(tensors: Sequence[Tensor], model: Model) -> Inputs:
    """The model's inputs from one 2-D tensor (card order) or one tensor per feature."""
    by_name = {f.name: f for f in model.features}
    first = tensors[0]
    if len(tensors) == 1 and (
        first.name not in by_name or (first.width > 1 and len(model.features) > 1)
    ):
        return _matrix(first, model)
    return assemble(*_per_feature(tensors, by_name, model.numeric), model)


def assemble(values: Columns, rows: int, model: Model) -> Inputs:
    """Validated columns, by feature, as the model's inputs."""
    numeric = (
        np.stack([values[n] for n in model.numeric], axis=1)
        if model.numeric
        else np.zeros((rows, 0), dtype=np.float32)
    )
    categorical = {f.name: values[f.name] for f in model.features if f.type == "categorical"}
    return Inputs(numeric, categorical, rows)


def _matrix(tensor: Tensor, model: Model) -> Inputs:
    order = model.order
    if tensor.width != len(order):
        raise Unprocessable(
            f"input {tensor.name}: {tensor.width} columns, the model takes {len(order)} features "
            f"({', '.join(order)})"
        )
    values = tensor.values.reshape(tensor.rows, tensor.width)
    with refusing(tensor.rows, lambda: _by_column(values, order), model.numeric):
        if tensor.datatype not in ("BYTES", "BOOL") and len(model.numeric) == len(order):
            # The short path: every feature numeric, one conversion and one check of the matrix.
            matrix = _as_float32(tensor.values, tensor.name, lambda i: order[i % tensor.width])
            return Inputs(matrix.reshape(tensor.rows, tensor.width), {}, tensor.rows)
        by_name = {f.name: f for f in model.features}
        columns = {n: column_for(by_name[n], values[:, i], tensor) for i, n in enumerate(order)}
    return assemble(columns, tensor.rows, model)


def _by_column(values: np.ndarray[Any, Any], order: Sequence[str]) -> Columns:
    """A matrix's columns (views) by feature."""
    return {name: values[:, i] for i, name in enumerate(order)}


def _per_feature(
    tensors: Sequence[Tensor], by_name: dict[str, Feature], numeric: Collection[str]
) -> tuple[Columns, int]:
    unknown = [t.name for t in tensors if t.name not in by_name]
    if unknown:
        shown = unknown[:5] + (["..."] if len(unknown) > 5 else [])
        raise Unprocessable(f"unknown inputs {shown}; the model takes {sorted(by_name)}")
    missing = sorted(set(by_name) - {t.name for t in tensors})
    if missing:
        raise Unprocessable(f"missing inputs for features {missing}")
    if len(tensors) != len(by_name):
        raise BadRequest("each feature must be sent once")
    rows = {t.rows for t in tensors}
    if len(rows) != 1:
        raise BadRequest(f"inputs disagree on the number of rows: {sorted(rows)}")
    count = rows.pop()
    columns = {}
    shaped = all(t.width == 1 for t in tensors)  # else the rows are not one value per feature
    with refusing(count if shaped else 0, lambda: {t.name: t.values for t in tensors}, numeric):
        for tensor in tensors:
            if tensor.width != 1:
                raise BadRequest(f"input {tensor.name}: shape must be [rows] or [rows, 1]")
            columns[tensor.name] = column_for(by_name[tensor.name], tensor.values, tensor)
    return columns, count


def column_for(feature: Feature, values: np.ndarray[Any, Any], tensor: Tensor) -> Any:
    """One feature's values in the graph's type: float32 numbers or text (None: missing)."""
    if tensor.datatype == "BOOL":
        raise Refused(
            f"input {tensor.name}: feature {feature.name} is {feature.type}; send it as "
            f"{'FP32' if feature.type == 'numeric' else 'BYTES'}, not BOOL",
            names.REFUSED_BOOL,
        )
    if feature.type == "categorical":
        if values.dtype != object:
            return _codes_as_text(values, tensor, feature)
        if any(not (v is None or isinstance(v, str)) for v in values.tolist()):
            return np.array([_text(v, tensor, feature) for v in values.tolist()], dtype=object)
        return values
    if values.dtype == object:
        parsed = []
        for v in values.tolist():
            if v is None:
                parsed.append(math.nan)
                continue
            try:
                parsed.append(float(v))
            except (TypeError, ValueError):
                raise Refused(
                    f"input {tensor.name}: feature {feature.name} is numeric, {v!r} is not a "
                    "number",
                    names.REFUSED_NOT_A_NUMBER,
                ) from None
        values = np.array(parsed, dtype=np.float64)
    return _as_float32(values, tensor.name, lambda i: feature.name)


def _as_float32(values: np.ndarray[Any, Any], name: str, feature_at: Any) -> np.ndarray[Any, Any]:
    """Values as float32; a missing (NaN) or unrepresentable (beyond float32) value is a 422."""
    if values.dtype == np.float32:
        converted = values
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            converted = values.astype(np.float32)
    finite = np.isfinite(converted)
    if not finite.all():
        position = int(np.flatnonzero(~finite)[0])
        missing = math.isnan(float(values[position]))
        what = (
            "a missing value"
            if missing
            else f"the value {float(values[position])!r}, beyond the float32 range the model takes"
        )
        raise Refused(
            f"input {name}: feature {feature_at(position)} has {what} (element {position}); "
            "the model was trained on finite values without missing ones",
            names.REFUSED_MISSING if missing else names.REFUSED_OUT_OF_RANGE,
        )
    return converted


def _codes_as_text(values: np.ndarray[Any, Any], tensor: Tensor, feature: Feature) -> Any:
    """Integer codes sent as numbers, compared as the baseline does: as text."""
    if values.dtype.kind in "iu":
        return np.array([str(v) for v in values.tolist()], dtype=object)
    return np.array([_text(v, tensor, feature) for v in values.tolist()], dtype=object)


def _text(value: Any, tensor: Tensor, feature: Feature) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = float(value)
    if math.isnan(number):
        return None
    if not math.isfinite(number):
        raise Refused(
            f"input {tensor.name}: feature {feature.name} has the value {value!r}, not a category",
            names.REFUSED_NOT_A_CATEGORY,
        )
    return str(int(number)) if number.is_integer() else str(number)


def outputs(
    requested: Sequence[RequestedOutput] | None,
    binary_default: bool,
    prediction: Prediction,
    model: Model,
    rows: int,
) -> list[Output]:
    """The answer's output tensors, as requested (all of them by default)."""
    names = model.output_names
    produced: dict[str, tuple[str, list[int], np.ndarray[Any, Any]]] = {}
    if prediction.labels is not None:
        produced[names[0]] = ("BYTES", [rows], prediction.labels)
        if prediction.probabilities is not None:
            probabilities = prediction.probabilities
            produced[names[1]] = ("FP32", list(probabilities.shape), probabilities)
    else:
        assert prediction.values is not None
        produced[names[0]] = ("FP32", [rows, 1], prediction.values)
    wanted = requested or [RequestedOutput(n, binary_default) for n in names]
    return [
        Output(o.name, *produced[o.name], binary=o.binary) for o in wanted if o.name in produced
    ]


def check_outputs(prediction: Prediction, inputs: Inputs) -> None:
    """A prediction that is not finite is never answered (a 200 never carries a null); the
    refusal is for the inputs' rows (whose only missing values can be categorical)."""
    for array in (prediction.probabilities, prediction.values):
        if array is not None and not np.isfinite(array).all():
            raise Refused(
                "the model's output is not finite for these inputs (values beyond what it was "
                "trained on); nothing was answered",
                names.REFUSED_NON_FINITE_OUTPUT,
            ).of_rows(inputs.rows, inputs.categorical, ())


def check_requested(requested: Sequence[RequestedOutput] | None, model: Model) -> None:
    """Requested outputs exist (400 otherwise)."""
    unknown = [o.name for o in requested or () if o.name not in model.output_names]
    if unknown:
        raise BadRequest(f"unknown outputs {unknown}; the model has {list(model.output_names)}")


def model_metadata(name: str, version: str, model: Model) -> dict[str, Any]:
    """The OIP v2 model metadata (REST and gRPC)."""
    classes = len(model.class_labels) or -1
    described = (
        [
            {"name": model.output_names[0], "datatype": "BYTES", "shape": [-1]},
            {"name": model.output_names[1], "datatype": "FP32", "shape": [-1, classes]},
        ]
        if model.classifier
        else [{"name": model.output_names[0], "datatype": "FP32", "shape": [-1, 1]}]
    )
    by_name = {f.name: f for f in model.features}
    return {
        "name": name,
        "versions": [version],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": feature,
                "datatype": "FP32" if by_name[feature].type == "numeric" else "BYTES",
                "shape": [-1, 1],
            }
            for feature in model.order
        ],
        "outputs": described,
        "parameters": {"task": model.task, "class_labels": model.class_labels},
    }


SERVER_EXTENSIONS = ["binary_tensor_data", "feedback"]
SERVER_METADATA = {"name": "flywheel-serving", "version": "0.1.0", "extensions": SERVER_EXTENSIONS}
"""The OIP v2 server metadata (REST and gRPC)."""
