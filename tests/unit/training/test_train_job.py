"""The training Job entrypoint end to end on a real ingested snapshot (no cluster)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import onnxruntime as ort

from flywheel.api.dataset import DatasetSpec
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import ArtifactStore
from flywheel.interfaces.jobs import Champion
from flywheel.jobs.ingest import ingest
from flywheel.jobs.train import main, train

RUN = {
    "model": "iris",
    "datasetRef": {"name": "iris"},
    "estimator": {
        "class": "sklearn.ensemble.RandomForestClassifier",
        "params": {"n_estimators": 20},
    },
    "split": {"testFraction": 0.25, "seed": 7},
    "validation": {"thresholds": [{"metric": "accuracy", "min": 0.8}]},
}


def _snapshot(store: ArtifactStore) -> dict[str, Any]:
    spec = DatasetSpec.model_validate({"source": {"uri": "sklearn://iris"}})
    report = ingest(
        spec, namespace="ns", name="iris", claim="art", store=store, previous_digest=None
    )
    return report.model_dump(by_alias=True, mode="json")


def _train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """The training Job's report, as the operator receives it (the wire document)."""
    return train(*args, **kwargs).model_dump(by_alias=True, mode="json")


def test_train_stores_a_verified_model_and_is_reproducible(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = _snapshot(store)
    spec = TrainingRunSpec.model_validate(RUN)
    first = _train(
        spec,
        namespace="ns",
        run="run-1",
        snapshot_uri=str(data["snapshotURI"]),
        digest=str(data["digest"]),
        claim="art",
        store=store,
    )
    model = store.read_bytes(first["modelURI"])
    assert hashlib.sha256(model).hexdigest() == first["sha256"]
    assert first["metrics"]["accuracy"] >= 0.8
    assert set(first["metrics"]) >= {"accuracy", "f1_macro", "roc_auc"}
    assert first["signature"]["classLabels"] == ["0", "1", "2"]
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["label", "probabilities"]
    card = json.loads(store.read_bytes(first["modelURI"].replace("model.onnx", "card.json")))
    assert card["datasetDigest"] == data["digest"]
    again = _train(
        spec,
        namespace="ns",
        run="run-2",
        snapshot_uri=str(data["snapshotURI"]),
        digest=str(data["digest"]),
        claim="art",
        store=store,
    )
    assert again["metrics"] == first["metrics"], "same data, params and seed: same metrics"
    assert again["sha256"] == first["sha256"], "and the same ONNX bytes"


def test_invalid_estimator_and_tampered_data_are_not_retryable(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = _snapshot(store)
    log = tmp_path / "termination-log"
    args = [
        "--namespace",
        "ns",
        "--run",
        "r",
        "--snapshot",
        str(data["snapshotURI"]),
        "--claim",
        "art",
        "--artifacts-root",
        str(tmp_path),
        "--termination-log",
        str(log),
    ]
    bad = {
        **RUN,
        "estimator": {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_trees": 3}},
    }
    assert main(["--spec", json.dumps(bad), "--digest", str(data["digest"]), *args]) == 3
    result = json.loads(log.read_text())
    assert (result["ok"], result["reason"]) == (False, "InvalidEstimator")
    assert "n_trees" in result["message"]
    assert main(["--spec", json.dumps(RUN), "--digest", "sha256:" + "0" * 64, *args]) == 3
    assert json.loads(log.read_text())["reason"] == "DatasetDigestMismatch"


def test_the_champion_is_rescored_on_the_same_held_out_rows(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = _snapshot(store)
    where: dict[str, Any] = {
        "snapshot_uri": str(data["snapshotURI"]),
        "digest": str(data["digest"]),
    }
    first = _train(
        TrainingRunSpec.model_validate(RUN),
        namespace="ns",
        run="run-1",
        claim="art",
        store=store,
        **where,
    )
    champion = Champion.model_validate(
        {
            "version": 1,
            "uri": first["modelURI"],
            "sha256": first["sha256"],
            "features": first["signature"]["features"],
            "classLabels": first["signature"]["classLabels"],
            "metrics": {"accuracy": 0.5},
        }
    )
    logistic = {**RUN, "estimator": {"class": "sklearn.linear_model.LogisticRegression"}}
    second = _train(
        TrainingRunSpec.model_validate(logistic),
        namespace="ns",
        run="run-2",
        claim="art",
        store=store,
        champion=champion,
        **where,
    )
    rival = second["champion"]
    assert rival["rescored"] is True
    # Same data and seed, so the same held-out rows: the champion scores exactly as it did.
    assert rival["metrics"]["accuracy"] == first["metrics"]["accuracy"]
    assert rival["metrics"] != second["metrics"]
    tampered = champion.model_copy(update={"sha256": "0" * 64})
    third = _train(
        TrainingRunSpec.model_validate(logistic),
        namespace="ns",
        run="run-3",
        claim="art",
        store=store,
        champion=tampered,
        **where,
    )
    assert third["champion"]["rescored"] is False
    assert third["champion"]["metrics"] == {"accuracy": 0.5}, "falls back to recorded metrics"
    assert "does not match its recorded sha256" in third["champion"]["note"]
