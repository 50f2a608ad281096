"""The model card travels inside model.onnx, so the one recorded sha256 covers it (issue 20,
item 6)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_iris

from flywheel.api.dataset import DatasetSpec
from flywheel.api.trainingrun import Estimator, Preprocessing, TrainingRunSpec
from flywheel.artifacts import ArtifactStore
from flywheel.jobs.ingest import ingest
from flywheel.jobs.train import train
from flywheel.training.export import (
    check_parity,
    embed_card,
    embedded_card,
    export,
    onnx_inputs,
)
from flywheel.training.model import build_pipeline
from flywheel_serving.model import Model, ModelLoadError
from flywheel_serving.names import MODEL_CARD_METADATA_KEY

RUN = {
    "model": "iris",
    "datasetRef": {"name": "iris"},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    "split": {"testFraction": 0.25, "seed": 7},
}


def _train(tmp_path: Path, run: str = "run-1") -> tuple[ArtifactStore, dict[str, object]]:
    store = ArtifactStore(tmp_path)
    spec = DatasetSpec.model_validate({"source": {"uri": "sklearn://iris"}})
    data = ingest(spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None)
    report = train(
        TrainingRunSpec.model_validate(RUN),
        namespace="ns",
        run=run,
        snapshot_uri=data.snapshot_uri,
        digest=data.digest,
        claim="art",
        store=store,
    )
    return store, report.model_dump(by_alias=True, mode="json")


def test_the_stored_model_carries_its_card_and_its_sha256_covers_it(tmp_path: Path) -> None:
    store, report = _train(tmp_path)
    model_uri = str(report["modelURI"])
    model = store.read_bytes(model_uri)
    card = store.read_bytes(model_uri.replace("model.onnx", "card.json"))
    assert hashlib.sha256(model).hexdigest() == report["sha256"], "the digest of those bytes"
    assert embedded_card(model) == card.decode(), "the same JSON as card.json"
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    embedded = json.loads(session.get_modelmeta().custom_metadata_map[MODEL_CARD_METADATA_KEY])
    assert embedded["signature"] == report["signature"]
    assert embedded["parity"]["maxDeviation"] == report["maxDeviation"]
    # The server serves by it, and refuses a card file that says otherwise.
    served = Model(model)
    assert served.class_labels == ["0", "1", "2"]
    assert served.order == [f["name"] for f in embedded["signature"]["features"]]
    lying = json.loads(card)
    lying["signature"]["classLabels"] = ["2", "1", "0"]
    with pytest.raises(ModelLoadError, match="classLabels reversed") as refused:
        Model(model, card=lying)
    assert refused.value.reason == "ArtifactDigestMismatch"


def test_parity_is_checked_on_the_bytes_that_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked: list[bytes] = []

    def spy(onnx: bytes, *args: Any, **kwargs: Any) -> Any:
        checked.append(onnx)
        return check_parity(onnx, *args, **kwargs)

    monkeypatch.setattr("flywheel.jobs.train.check_parity", spy)
    store, report = _train(tmp_path)
    stored = store.read_bytes(str(report["modelURI"]))
    assert checked[-1] == stored
    assert embedded_card(checked[0]) is None, "the first check gives the card its deviation"


def test_embedding_changes_only_the_metadata() -> None:
    frame = load_iris(as_frame=True).frame
    numeric = [c for c in frame.columns if c != "target"]
    x, y = frame[numeric], frame["target"].astype(str)
    pipeline = build_pipeline(
        Estimator.model_validate({"class": "sklearn.tree.DecisionTreeClassifier"}),
        Preprocessing(),
        numeric=numeric,
        categorical=[],
        seed=0,
    )
    pipeline.fit(x, y)
    bare = export(pipeline, numeric, [], classifier=True)
    assert embedded_card(bare) is None
    first = embed_card(bare, '{"signature": {"task": "classification"}}')
    again = embed_card(first, '{"signature": {"task": "regression"}}')
    assert embedded_card(again) == '{"signature": {"task": "regression"}}', "replaced, not added"
    assert embed_card(bare, "{}") == embed_card(bare, "{}"), "deterministic bytes"

    def run(model: bytes) -> list[Any]:
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        feeds = dict(zip(names, onnx_inputs(pd.DataFrame(x), numeric, []), strict=True))
        return list(session.run(None, feeds))

    for before, after in zip(run(bare), run(again), strict=True):
        assert np.array_equal(before, after)
    assert check_parity(again, pipeline, x, numeric, [], classifier=True).max_deviation == 0.0
