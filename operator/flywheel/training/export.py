"""ONNX export with a parity check: onnxruntime must agree with scikit-learn on held-out rows.

The graph takes one 2-D float input per numeric feature block and one string input per
categorical column (so serving can accept raw categories); classifiers output `label` and
`probabilities` as plain tensors (no ZipMap). Parity: every predicted label equal, and
probabilities within `tolerance` (regression values relative to max(1, |value|)). skl2onnx
sanitises input names (spaces become underscores), so inputs are fed by position.

The model card travels inside the model: `embed_card` stores it in the ONNX `metadata_props`
(key `flywheel.dev/model-card`), so the sha256 recorded for the bytes covers the card too and the
server takes the card from the verified bytes, never from a file beside them alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.pipeline import Pipeline

from flywheel.interfaces.jobs import FailureReason
from flywheel_serving.names import MODEL_CARD_METADATA_KEY

TOLERANCE = 1e-4


class ParityFailed(Exception):
    """onnxruntime and scikit-learn disagree on the held-out rows."""

    reason = FailureReason.ONNX_PARITY_FAILED


@dataclass(frozen=True)
class Exported:
    """An exported model and how faithful it is."""

    onnx: bytes
    max_deviation: float
    label_mismatches: int
    predictions: np.ndarray[Any, Any] = field(compare=False)
    """What onnxruntime predicted for the held-out rows: labels as strings (a classifier) or
    float values (a regressor), in row order."""


def _initial_types(numeric: list[str], categorical: list[str]) -> list[tuple[str, Any]]:
    return [(n, FloatTensorType([None, 1])) for n in numeric] + [
        (c, StringTensorType([None, 1])) for c in categorical
    ]


def onnx_inputs(
    frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> list[np.ndarray[Any, Any]]:
    """Model inputs in graph order (numeric features, then categorical): one column each."""
    feeds = [frame[n].to_numpy(dtype=np.float32).reshape(-1, 1) for n in numeric]
    feeds += [frame[c].astype(str).to_numpy(dtype=object).reshape(-1, 1) for c in categorical]
    return feeds


def run_onnx(
    model: bytes, frame: pd.DataFrame, numeric: list[str], categorical: list[str]
) -> list[Any]:
    """The ONNX model's outputs for the rows, from onnxruntime on the CPU as serving runs it
    (inputs fed by position)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(names, onnx_inputs(frame, numeric, categorical), strict=True))
    return list(session.run(None, feeds))


def predictions_of(outputs: list[Any], *, classifier: bool) -> np.ndarray[Any, Any]:
    """The predictions among a model's outputs: a classifier's labels as strings, a
    regressor's values as floats, one per row."""
    if classifier:
        return np.asarray(outputs[0]).ravel().astype(str)
    return np.asarray(outputs[0], dtype=float).ravel()


def export(
    pipeline: Pipeline, numeric: list[str], categorical: list[str], *, classifier: bool
) -> bytes:
    """The ONNX bytes of a fitted pipeline."""
    options = {id(pipeline.steps[-1][1]): {"zipmap": False}} if classifier else None
    model = to_onnx(
        pipeline,
        initial_types=_initial_types(numeric, categorical),
        options=options,
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    return bytes(model.SerializeToString())


def embed_card(model: bytes, card: str) -> bytes:
    """The ONNX bytes with the model card (its JSON text) in the metadata, under
    `MODEL_CARD_METADATA_KEY`, replacing any card embedded before. Only metadata changes: the
    graph, and so every answer, stays the same."""
    proto = onnx.load_model_from_string(model)
    kept = [p for p in proto.metadata_props if p.key != MODEL_CARD_METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = MODEL_CARD_METADATA_KEY, card
    return bytes(proto.SerializeToString())


def embedded_card(model: bytes) -> str | None:
    """The model card embedded in ONNX bytes (its JSON text), or None."""
    proto = onnx.load_model_from_string(model)
    found = [p.value for p in proto.metadata_props if p.key == MODEL_CARD_METADATA_KEY]
    return found[-1] if found else None


def check_parity(
    onnx: bytes,
    pipeline: Pipeline,
    held_out: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    *,
    classifier: bool,
    tolerance: float = TOLERANCE,
) -> Exported:
    """Run both on the held-out rows; raise ParityFailed with the worst deviation."""
    outputs = run_onnx(onnx, held_out, numeric, categorical)
    if classifier:
        labels, probabilities = predictions_of(outputs, classifier=True), outputs[1]
        expected = pipeline.predict(held_out)
        mismatches = int(np.sum(labels != np.asarray(expected).astype(str)))
        reference = pipeline.predict_proba(held_out) if hasattr(pipeline, "predict_proba") else None
        deviation = (
            float(np.max(np.abs(np.asarray(probabilities) - reference)))
            if reference is not None
            else 0.0
        )
    else:
        values = predictions_of(outputs, classifier=False)
        expected_values = np.asarray(pipeline.predict(held_out), dtype=float)
        mismatches = 0
        # Relative to the value's size: the graph computes in float32.
        deviation = float(
            np.max(np.abs(values - expected_values) / np.maximum(1.0, np.abs(expected_values)))
        )
    if mismatches or not deviation <= tolerance:  # a NaN deviation fails too
        raise ParityFailed(
            f"onnxruntime disagrees with scikit-learn on {mismatches} of {len(held_out)} labels; "
            f"worst deviation {deviation:.3g} (tolerance {tolerance:g})"
        )
    return Exported(
        onnx=onnx,
        max_deviation=deviation,
        label_mismatches=mismatches,
        predictions=labels if classifier else values,
    )
