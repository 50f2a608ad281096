"""The runtime: load one ONNX model, verify its sha256, describe its signature, run it.

Nothing here unpickles: the file is read as bytes, hashed, and handed to onnxruntime. A model
whose bytes do not match the expected digest is never loaded (`ArtifactDigestMismatch`).

The model card (feature names, types and order, class labels) comes from the verified bytes:
training embeds it in the ONNX metadata (`flywheel.dev/model-card`), so the digest covers it. A
card file beside the model (`card.json`, or `--card-uri`) is not covered by the digest: when one
is present it must describe the model exactly as the embedded card does, and a model with no
embedded card is not served with a card file either (`ArtifactDigestMismatch`, naming what
differs). Without either, the graph's own inputs describe the features.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from flywheel_serving.names import MODEL_CARD_METADATA_KEY

FeatureType = Literal["numeric", "categorical"]


class ModelLoadError(Exception):
    """The model cannot be served; `reason` is `ArtifactDigestMismatch` or `ModelLoadFailed`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def resolve(uri: str, artifacts_root: Path) -> Path:
    """The local path of a path, `file://` or `pvc://<claim>/<path>` URI."""
    if uri.startswith("file://"):
        return Path(uri.removeprefix("file://"))
    if uri.startswith("pvc://"):
        claim, _, relative = uri.removeprefix("pvc://").partition("/")
        if not claim or not relative:
            raise ModelLoadError("ModelLoadFailed", f"not an artifact URI: {uri!r}")
        base = (artifacts_root / claim).resolve()
        path = (base / relative).resolve()
        if not path.is_relative_to(base):
            raise ModelLoadError("ModelLoadFailed", f"{uri!r} escapes its claim")
        return path
    if "://" in uri:
        raise ModelLoadError("ModelLoadFailed", f"unsupported URI scheme: {uri!r}")
    return Path(uri)


@dataclass(frozen=True)
class Feature:
    """One model input, in graph order."""

    name: str
    type: FeatureType
    input_name: str


@dataclass(frozen=True)
class Inputs:
    """Decoded rows: numeric features as one matrix (graph order), categoricals by name."""

    numeric: np.ndarray[Any, Any]  # rows x numeric features, float32
    categorical: dict[str, np.ndarray[Any, Any]]  # name -> object array of str/None
    rows: int

    @staticmethod
    def concatenate(parts: list[Inputs]) -> Inputs:
        """Several requests' rows as one batch."""
        first = parts[0]
        return Inputs(
            np.concatenate([p.numeric for p in parts]),
            {n: np.concatenate([p.categorical[n] for p in parts]) for n in first.categorical},
            sum(p.rows for p in parts),
        )


@dataclass(frozen=True)
class Prediction:
    """What one session run returns, per row."""

    labels: np.ndarray[Any, Any] | None
    probabilities: np.ndarray[Any, Any] | None
    values: np.ndarray[Any, Any] | None


class Model:
    """A verified ONNX model and its onnxruntime session (reused by every request)."""

    def __init__(
        self,
        onnx: bytes,
        *,
        card: dict[str, Any] | None = None,
        card_source: str = "card.json",
        intra_op_threads: int = 1,
    ) -> None:
        """`onnx`: the verified bytes. `card`: a card file found beside the model (read from
        `card_source`), which the digest does not cover: it must agree with the card embedded in
        the bytes (ArtifactDigestMismatch otherwise, or when the bytes embed none)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception classes
            raise ModelLoadError(
                "ModelLoadFailed", f"onnxruntime cannot load it: {error}"
            ) from error
        self.card = verified_card(embedded_card(self.session), card, card_source)
        """The model card the model is served with: the one embedded in the verified bytes."""
        inputs = self.session.get_inputs()
        outputs = [o.name for o in self.session.get_outputs()]
        signature = _signature(self.card) if self.card is not None else {}
        declared = signature.get("features") or [
            {"name": i.name, "type": "categorical" if "string" in i.type else "numeric"}
            for i in inputs
        ]
        if len(declared) != len(inputs):
            raise ModelLoadError(
                "ModelLoadFailed",
                f"the card lists {len(declared)} features, the graph has {len(inputs)} inputs",
            )
        numeric_first = [f for f in declared if f["type"] == "numeric"] + [
            f for f in declared if f["type"] == "categorical"
        ]
        self.features = [
            Feature(str(f["name"]), f["type"], i.name)
            for f, i in zip(numeric_first, inputs, strict=True)
        ]
        for feature, graph_input in zip(self.features, inputs, strict=True):
            if (feature.type == "categorical") != ("string" in graph_input.type):
                raise ModelLoadError(
                    "ModelLoadFailed",
                    f"feature {feature.name} is {feature.type} but the graph input "
                    f"{graph_input.name} is {graph_input.type}",
                )
        self.numeric = [f.name for f in self.features if f.type == "numeric"]
        """Numeric features in graph order: the columns of :attr:`Inputs.numeric`."""
        self._numeric_inputs = [f.input_name for f in self.features if f.type == "numeric"]
        self._categorical = [f for f in self.features if f.type == "categorical"]
        self.order = [str(f["name"]) for f in declared]
        """Features in the card's (the dataset's) order: the order of 2-D tensors' columns."""
        self.classifier = len(outputs) >= 2
        self.task = signature.get("task") or ("classification" if self.classifier else "regression")
        labels = signature.get("classLabels")
        self.class_labels: list[str] = [str(c) for c in labels] if labels else []
        self.output_names = outputs

    def run(self, inputs: Inputs) -> Prediction:
        """Predict a batch of rows."""
        numeric = inputs.numeric
        if inputs.rows == 1:  # a [1, 1] slice of one row is already contiguous
            feeds = {name: numeric[:, i : i + 1] for i, name in enumerate(self._numeric_inputs)}
        else:  # one contiguous row per feature: each graph input gets a [rows, 1] view
            columns = np.ascontiguousarray(numeric.T)
            feeds = {n: columns[i].reshape(-1, 1) for i, n in enumerate(self._numeric_inputs)}
        for feature in self._categorical:
            feeds[feature.input_name] = inputs.categorical[feature.name].reshape(-1, 1)
        results = self.session.run(None, feeds)
        if self.classifier:
            probabilities = results[1]
            if probabilities.dtype != np.float32 or not probabilities.flags.c_contiguous:
                probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
            return Prediction(results[0].reshape(-1), probabilities, None)
        values = np.ascontiguousarray(results[0], dtype=np.float32).reshape(-1)
        return Prediction(None, None, values)

    def warm_up(self) -> None:
        """One inference on a neutral row, so the first request pays no lazy initialisation."""
        empty = np.array([""], dtype=object)
        numeric = np.zeros((1, len(self._numeric_inputs)), dtype=np.float32)
        self.run(Inputs(numeric, {f.name: empty for f in self._categorical}, 1))


def embedded_card(session: ort.InferenceSession) -> dict[str, Any] | None:
    """The model card in the ONNX metadata (`MODEL_CARD_METADATA_KEY`), or None."""
    text = session.get_modelmeta().custom_metadata_map.get(MODEL_CARD_METADATA_KEY)
    if text is None:
        return None
    try:
        card = json.loads(text)
    except ValueError as error:
        raise ModelLoadError(
            "ModelLoadFailed", f"the model card embedded in the model is not JSON: {error}"
        ) from error
    if not isinstance(card, dict) or not isinstance(_signature(card), dict):
        raise ModelLoadError(
            "ModelLoadFailed", "the model card embedded in the model is not a JSON object"
        )
    return card


def verified_card(
    embedded: dict[str, Any] | None, given: dict[str, Any] | None, source: str
) -> dict[str, Any] | None:
    """The card to serve with: the embedded one, once a card file given beside it (`source`)
    is known to describe the model the same way (its signature equal); ArtifactDigestMismatch
    when it does not, or when only the file has a card (the digest covers no card then)."""
    if given is None:
        return embedded
    if embedded is None:
        raise ModelLoadError(
            "ArtifactDigestMismatch",
            f"{source} describes the model, but the model embeds no card "
            f"({MODEL_CARD_METADATA_KEY}): the sha256 does not cover that file, so it cannot "
            "be trusted to describe the features and classes; refusing to serve it (remove the "
            "file to serve the model on its graph's inputs, or retrain to embed the card)",
        )
    theirs, ours = _signature(given), _signature(embedded)
    if not isinstance(theirs, dict):
        raise ModelLoadError(
            "ArtifactDigestMismatch",
            f"{source} has no signature object, the model card embedded in the verified model "
            f"does ({_brief(ours)}); refusing to serve it",
        )
    differences = [
        _difference(key, theirs.get(key), ours.get(key))
        for key in sorted(set(theirs) | set(ours))
        if theirs.get(key) != ours.get(key)
    ]
    if differences:
        raise ModelLoadError(
            "ArtifactDigestMismatch",
            f"{source} does not match the model card embedded in the verified model (only that "
            f"one is covered by the sha256): {'; '.join(differences)}; refusing to serve it",
        )
    return embedded


def _signature(card: dict[str, Any]) -> Any:
    """A card's signature: its `signature`, or the card itself when it is only a signature."""
    return card.get("signature", card)


def _difference(key: str, theirs: Any, ours: Any) -> str:
    """One signature field that differs, both ways round, briefly."""
    if key == "features" and _feature_list(theirs) and _feature_list(ours):
        file_names = [f.get("name") for f in theirs]
        model_names = [f.get("name") for f in ours]
        if file_names != model_names:
            how = (
                "reordered"
                if sorted(map(str, file_names)) == sorted(map(str, model_names))
                else "differ"
            )
            return (
                f"features {how}: {_brief(file_names)} in the file, {_brief(model_names)} in "
                "the model"
            )
        types = [
            f"{f.get('name')} is {f.get('type')} in the file, {g.get('type')} in the model"
            for f, g in zip(theirs, ours, strict=True)
            if f != g
        ]
        return "feature types differ: " + _brief(", ".join(types))
    if key == "classLabels" and isinstance(theirs, list) and theirs == list(reversed(ours or [])):
        return f"classLabels reversed: {_brief(theirs)} in the file, {_brief(ours)} in the model"
    return f"{key}: {_brief(theirs)} in the file, {_brief(ours)} in the model"


def _feature_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(f, dict) for f in value)


def _brief(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load(
    model_uri: str,
    *,
    sha256: str,
    card_uri: str,
    artifacts_root: Path,
    intra_op_threads: int,
) -> tuple[Model, str]:
    """The verified model and the sha256 of its bytes; ModelLoadError when it must not serve."""
    path = resolve(model_uri, artifacts_root)
    try:
        onnx = path.read_bytes()
    except OSError as error:
        raise ModelLoadError("ModelLoadFailed", f"cannot read {path}: {error}") from error
    digest = hashlib.sha256(onnx).hexdigest()
    if not sha256:
        raise ModelLoadError(
            "ArtifactDigestMismatch",
            f"no expected sha256 for {model_uri} (--sha256): refusing to serve an unverified model",
        )
    if digest != sha256.removeprefix("sha256:"):
        raise ModelLoadError(
            "ArtifactDigestMismatch",
            f"{model_uri} has sha256 {digest}, expected {sha256}: refusing to serve it",
        )
    card_path = resolve(card_uri, artifacts_root) if card_uri else path.with_name("card.json")
    card: dict[str, Any] | None = None
    if card_path.exists():
        try:
            card = json.loads(card_path.read_bytes())
        except (OSError, ValueError) as error:
            raise ModelLoadError("ModelLoadFailed", f"cannot read {card_path}: {error}") from error
        if not isinstance(card, dict):
            raise ModelLoadError("ModelLoadFailed", f"{card_path} is not a JSON object")
    model = Model(
        onnx, card=card, card_source=card_uri or str(card_path), intra_op_threads=intra_op_threads
    )
    try:
        model.warm_up()
    except Exception as error:  # onnxruntime's own exception classes
        raise ModelLoadError("ModelLoadFailed", f"the warm-up inference failed: {error}") from error
    return model, digest
