"""The prediction-drift baseline: the final ONNX model's own held-out predictions, counted in the
serving pods' prediction slots, reported by the training Job and recorded in the ModelVersion."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

from flywheel.api.dataset import DatasetSpec
from flywheel.api.kinds import MODEL_VERSION
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import ArtifactStore
from flywheel.controllers.trainingrun.decide import registrable
from flywheel.controllers.trainingrun.render import (
    PinnedDataset,
    render_model_version,
    render_training_job,
)
from flywheel.core.target import parse_meta
from flywheel.interfaces.jobs import (
    TERMINATION_LIMIT,
    IngestReport,
    PredictionCounts,
    TrainArgs,
    TrainReport,
    decode_result,
    encode_result,
)
from flywheel.jobs.ingest import ingest
from flywheel.jobs.train import main, train
from flywheel.settings import OperatorSettings
from flywheel.training.export import check_parity, onnx_inputs
from flywheel.training.prediction_baseline import (
    class_counts,
    label_edges,
    prediction_baseline,
    value_counts,
)
from flywheel_serving.bins import NumericBins
from flywheel_serving.names import numeric_slots
from tests.support.crdcheck import crd_schema, validate
from tests.support.examples import CRDS


def _ingest(store: ArtifactStore, tmp_path: Path, source: str | pd.DataFrame) -> IngestReport:
    if isinstance(source, pd.DataFrame):
        path = tmp_path / "data.csv"
        source.to_csv(path, index=False)
        source = f"file://{path}"
    spec = DatasetSpec.model_validate({"source": {"uri": source}})
    return ingest(spec, namespace="ns", name="d", claim="art", store=store, previous_digest=None)


def _run(estimator: str, params: dict[str, Any] | None = None) -> TrainingRunSpec:
    return TrainingRunSpec.model_validate(
        {
            "model": "m",
            "datasetRef": {"name": "d"},
            "estimator": {"class": estimator, "params": params or {}},
            "split": {"testFraction": 0.3, "seed": 3},
        }
    )


class HeldOut:
    """The held-out rows the Job checked its final model on (spied on the last parity check)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.frame = pd.DataFrame()

        def spy(onnx: bytes, pipeline: Any, held_out: pd.DataFrame, *a: Any, **k: Any) -> Any:
            self.frame = held_out
            return check_parity(onnx, pipeline, held_out, *a, **k)

        monkeypatch.setattr("flywheel.jobs.train.check_parity", spy)


def _train(
    store: ArtifactStore, data: IngestReport, spec: TrainingRunSpec, *, stats: bool = True
) -> TrainReport:
    return train(
        spec,
        namespace="ns",
        run="r",
        snapshot_uri=data.snapshot_uri,
        digest=data.digest,
        claim="art",
        store=store,
        stats_uri=data.stats_uri if stats else None,
    )


def _stored_predictions(
    store: ArtifactStore, report: TrainReport, held_out: pd.DataFrame
) -> np.ndarray[Any, Any]:
    """What the stored ONNX model predicts for the held-out rows, run here by onnxruntime."""
    numeric = [f.name for f in report.signature.features if f.type == "numeric"]
    categorical = [f.name for f in report.signature.features if f.type == "categorical"]
    session = ort.InferenceSession(store.read_bytes(report.model_uri))
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(names, onnx_inputs(held_out, numeric, categorical), strict=True))
    first = np.asarray(session.run(None, feeds)[0]).ravel()
    return first.astype(str) if report.signature.task == "classification" else first


def _imbalanced(rows: int = 400) -> pd.DataFrame:
    """70 % positives; a feature that only weakly tells them apart, so a linear model predicts
    positives far more often than the labels hold them."""
    rng = np.random.default_rng(0)
    target = (rng.random(rows) < 0.7).astype(int)
    return pd.DataFrame(
        {
            "signal": target * 0.6 + rng.normal(0, 1, rows),
            "noise": rng.normal(0, 1, rows),
            "target": target,
        }
    )


def test_a_classifier_records_its_own_predictions_not_the_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "mnt")
    frame = _imbalanced()
    data = _ingest(store, tmp_path, frame)
    held = HeldOut(monkeypatch)
    report = _train(store, data, _run("sklearn.linear_model.LogisticRegression"))
    baseline = report.prediction_baseline
    assert baseline is not None
    assert baseline.rows == report.held_out == len(held.frame) > 0
    assert sum(baseline.counts.values()) == baseline.rows
    assert list(baseline.counts) == report.signature.class_labels == ["0", "1"], "class order"
    predicted = Counter(_stored_predictions(store, report, held.frame).tolist())
    assert baseline.counts == {c: predicted.get(c, 0) for c in ["0", "1"]}
    labels = Counter(frame.loc[held.frame.index, "target"].astype(str))
    assert baseline.counts != dict(labels), "the model's distribution, not the labels'"
    assert baseline.counts["1"] > labels["1"], "the majority class is over-predicted"
    wire = json.loads(encode_result(report))
    assert wire["predictionBaseline"] == {"rows": baseline.rows, "counts": baseline.counts}


def test_a_class_the_model_never_predicts_counts_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "mnt")
    data = _ingest(store, tmp_path, "sklearn://iris")
    held = HeldOut(monkeypatch)
    stump = _run("sklearn.tree.DecisionTreeClassifier", {"max_depth": 1})
    report = _train(store, data, stump)
    baseline = report.prediction_baseline
    assert baseline is not None
    assert list(baseline.counts) == ["0", "1", "2"]
    assert sorted(baseline.counts.values())[0] == 0, "a stump tells only two classes apart"
    assert sum(baseline.counts.values()) == baseline.rows == len(held.frame)
    predicted = Counter(_stored_predictions(store, report, held.frame).tolist())
    assert baseline.counts == {c: predicted.get(c, 0) for c in ["0", "1", "2"]}


def test_a_regressor_counts_in_serving_bins_on_the_label_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ArtifactStore(tmp_path / "mnt")
    data = _ingest(store, tmp_path, "sklearn://diabetes")
    held = HeldOut(monkeypatch)
    report = _train(store, data, _run("sklearn.linear_model.Ridge"))
    baseline = report.prediction_baseline
    assert baseline is not None
    stats = json.loads(store.read_bytes(data.stats_uri))
    edges = stats["label"]["histogram"]["edges"]
    assert list(baseline.counts) == numeric_slots(len(edges))
    values = _stored_predictions(store, report, held.frame)
    expected = NumericBins.build([("prediction", edges)]).count(values.reshape(-1, 1)).tolist()
    assert list(baseline.counts.values()) == expected
    assert baseline.rows == report.held_out == sum(expected) == len(held.frame)
    assert baseline.counts["null"] == 0
    without = _train(store, data, _run("sklearn.linear_model.Ridge"), stats=False)
    assert without.prediction_baseline is None, "no stats document: no bins to count in"


def test_the_job_reads_the_stats_it_is_given(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    data = _ingest(store, tmp_path, "sklearn://diabetes")
    log = tmp_path / "termination-log"
    args = TrainArgs(
        spec=_run("sklearn.linear_model.Ridge"),
        namespace="ns",
        run="r",
        snapshot=data.snapshot_uri,
        digest=data.digest,
        claim="art",
        stats=data.stats_uri,
        artifacts_root=tmp_path,
        termination_log=log,
    )
    local = ["--artifacts-root", str(tmp_path), "--termination-log", str(log)]
    assert main(args.command()[3:] + local) == 0
    result = decode_result(log.read_text(), TrainReport)
    assert isinstance(result, TrainReport)
    assert result.prediction_baseline is not None
    assert result.prediction_baseline.rows == result.held_out


def test_counting_follows_serving_binning() -> None:
    edges = [0.0, 1.0, 2.0]
    values = np.array([-5.0, 0.0, 0.5, 1.0, 2.0, 2.5, np.nan, np.inf])
    counted = value_counts(values, edges)
    # below, [0, 1), [1, 2] (the last edge belongs to the last bin), above, null.
    assert counted.counts == {"0": 1, "1": 2, "2": 2, "3": 1, "null": 0}
    assert counted.rows == 6, "non-finite predictions are not counted, as serving rejects them"
    assert class_counts(np.array(["b", "b"]), ["a", "b", "c"]).counts == {"a": 0, "b": 2, "c": 0}
    with pytest.raises(ValueError, match="not among the model's classes"):
        class_counts(["z"], ["a", "b"])


@pytest.mark.parametrize(
    ("stats", "expected"),
    [
        ({"label": {"histogram": {"edges": [1, 2.5]}}}, [1.0, 2.5]),
        ({"label": {"type": "categorical", "categories": []}}, None),
        ({"label": {"histogram": {"edges": [1]}}}, None),
        ({}, None),
    ],
)
def test_label_edges(stats: dict[str, Any], expected: list[float] | None) -> None:
    assert label_edges(stats) == expected


def test_a_regressor_without_label_histogram_or_rows_records_nothing() -> None:
    values = np.array([1.0, 2.0])
    categorical = {"label": {"type": "categorical"}}
    assert prediction_baseline(values, classes=None, stats=categorical) is None
    assert prediction_baseline(values, classes=None, stats=None) is None
    assert prediction_baseline(np.array([]), classes=["a"], stats=None) is None


def _report(baseline: PredictionCounts | None, labels: list[str] | None = None) -> TrainReport:
    return TrainReport.model_validate(
        {
            "sha256": "a" * 64,
            "modelURI": "pvc://art/models/ns/m/r/model.onnx",
            "metrics": {"accuracy": 0.9},
            "signature": {
                "task": "classification",
                "features": [{"name": "x", "type": "numeric"}],
                "classLabels": labels or ["0", "1", "2"],
            },
            "heldOut": 30,
            "predictionBaseline": baseline.model_dump(by_alias=True) if baseline else None,
        }
    )


def test_the_report_round_trips_and_stays_small() -> None:
    report = _report(PredictionCounts(rows=30, counts={"0": 10, "1": 20, "2": 0}))
    assert decode_result(encode_result(report), TrainReport) == report
    # 200 classes with 16-character names fit the termination message, but not twice over.
    labels = [hashlib.sha256(str(i).encode()).hexdigest()[:16] for i in range(200)]
    counts = {label: i % 97 for i, label in enumerate(labels)}
    large = _report(PredictionCounts(rows=sum(counts.values()), counts=counts), labels)
    text = encode_result(large)
    assert len(text) <= TERMINATION_LIMIT
    decoded = decode_result(text, TrainReport)
    assert isinstance(decoded, TrainReport), "the model is reported, not failed"
    assert decoded.signature.class_labels == labels
    assert decoded.prediction_baseline is None, "the baseline is what is left out"


META = parse_meta({"metadata": {"name": "r", "namespace": "ns", "uid": "u-1"}})
PINNED = PinnedDataset(
    "d", "v1", "sha256:" + "b" * 64, "pvc://art/d/data.parquet", "pvc://art/d/stats.json"
)


def test_the_model_version_records_the_reported_baseline() -> None:
    spec = _run("sklearn.linear_model.LogisticRegression")
    counts = PredictionCounts(rows=30, counts={"0": 10, "1": 20, "2": 0})
    body = render_model_version(META, spec, _report(counts), 1, PINNED)
    assert body["spec"]["baseline"] == {
        "statsURI": PINNED.stats_uri,
        "predictions": {"rows": 30, "counts": {"0": 10, "1": 20, "2": 0}},
    }
    assert registrable(body) is None
    crd = yaml.safe_load((CRDS / f"{MODEL_VERSION.crd_name}.yaml").read_text())
    assert validate(crd_schema(crd), body) == []
    too_many = dict.fromkeys((str(i) for i in range(1025)), 0)
    refused = json.loads(json.dumps(body))
    refused["spec"]["baseline"]["predictions"]["counts"] = too_many
    assert validate(crd_schema(crd), refused) != []
    assert registrable(refused) is not None, "the run fails once instead of forever"
    older = render_model_version(META, spec, _report(None), 1, PINNED)
    assert older["spec"]["baseline"] == {"statsURI": PINNED.stats_uri}
    assert registrable(older) is None
    job = render_training_job(META, spec, PINNED, OperatorSettings())
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[command.index("--stats") + 1] == PINNED.stats_uri
