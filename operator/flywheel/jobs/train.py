"""`python -m flywheel.jobs.train`: train, evaluate, export and check one TrainingRun.

Input: :class:`~flywheel.interfaces.jobs.TrainArgs` (the TrainingRun spec, its identity, the
pinned Dataset snapshot and digest, the artifacts claim, the champion). Output:
`models/<namespace>/<model>/<run>/{model.onnx,metrics.json,card.json,examples.json}` and a
:class:`~flywheel.interfaces.jobs.TrainReport` or a
:class:`~flywheel.interfaces.jobs.JobFailure` in the termination message. Exit code
`NOT_RETRYABLE` for a code, spec or data problem that a retry cannot fix (the Job's
podFailurePolicy stops on it); a crash exits otherwise and the Job retries.

With `--champion`, the champion's ONNX model is re-scored on the same held-out rows, so the
operator's champion gate compares like with like. Progress and timings go to stderr (the pod log).

The report carries the prediction-drift baseline: the stored model's own predictions on the
held-out rows (from the final parity check), counted in the serving pods' prediction slots
(:mod:`flywheel.training.prediction_baseline`); a regressor's are binned on the label histogram
of `--stats`, the Dataset version's statistics that the ModelVersion's baseline points to.

The model card is embedded in model.onnx (`flywheel.dev/model-card` in its metadata, the same
JSON as card.json) before the bytes are checked, stored and hashed: the one sha256 the
ModelVersion records covers the card, and the parity check runs on the bytes that are stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.model_selection import train_test_split

from flywheel.api.estimators import task_of
from flywheel.api.modelversion import FeatureSignature
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import ArtifactError, ArtifactStore, pvc_uri
from flywheel.data.schema import ResolvedSchema
from flywheel.data.snapshot import content_digest
from flywheel.interfaces.jobs import (
    TERMINATION_LOG,
    Champion,
    ExitCode,
    FailureReason,
    JobFailure,
    ModelSignature,
    TrainArgs,
    TrainReport,
    write_result,
)
from flywheel.training.champion import compare
from flywheel.training.export import (
    ParityFailed,
    check_parity,
    embed_card,
    export,
    predictions_of,
    run_onnx,
)
from flywheel.training.metrics import DEFAULTS, compute_metrics
from flywheel.training.model import InvalidEstimator, build_pipeline
from flywheel.training.prediction_baseline import prediction_baseline
from flywheel_serving.names import EXAMPLES_FORMAT, MODEL_CARD_FORMAT

LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")
EXAMPLE_ROWS = 20
"""Held-out rows recorded with their predictions in examples.json."""


def log(message: str, since: float) -> None:
    """One progress line with the seconds elapsed since the start."""
    print(f"[{time.perf_counter() - since:7.2f}s] {message}", file=sys.stderr, flush=True)


class DigestMismatch(Exception):
    """The snapshot's content does not match the pinned digest."""

    reason = FailureReason.DATASET_DIGEST_MISMATCH


def train(
    spec: TrainingRunSpec,
    *,
    namespace: str,
    run: str,
    snapshot_uri: str,
    digest: str,
    claim: str,
    store: ArtifactStore,
    champion: Champion | None = None,
    stats_uri: str | None = None,
) -> TrainReport:
    """Fit, evaluate, export, check parity, store the artifacts; the report."""
    started = time.perf_counter()
    frame = pd.read_parquet(io.BytesIO(store.read_bytes(snapshot_uri)))
    if content_digest(frame) != digest:
        raise DigestMismatch(f"{snapshot_uri} does not match the pinned digest {digest}")
    log(f"snapshot {digest[:19]} verified: {len(frame)} rows", started)
    schema_uri = snapshot_uri.rsplit("/", 1)[0] + "/schema.json"
    schema = ResolvedSchema.from_json(json.loads(store.read_bytes(schema_uri)))
    numeric = [f.name for f in schema.features if f.type == "numeric"]
    categorical = [f.name for f in schema.features if f.type == "categorical"]
    task = spec.task or task_of(spec.estimator.final_class) or "classification"
    classifier = task == "classification"
    x, y = frame[numeric + categorical], frame[schema.label]
    if classifier:
        y = y.astype(str)
    stratify = y if classifier and spec.split.stratify else None
    train_x, test_x, train_y, test_y = train_test_split(
        x, y, test_size=spec.split.test_fraction, random_state=spec.split.seed, stratify=stratify
    )
    pipeline = build_pipeline(
        spec.estimator,
        spec.preprocessing,
        numeric=numeric,
        categorical=categorical,
        seed=spec.split.seed,
    )
    fit_started = time.perf_counter()
    pipeline.fit(train_x, train_y)
    fit_seconds = time.perf_counter() - fit_started
    log(
        f"fitted {spec.estimator.final_class} on {len(train_x)} rows in {fit_seconds:.2f}s", started
    )
    predictions = pipeline.predict(test_x)
    probabilities = (
        pipeline.predict_proba(test_x)
        if classifier and hasattr(pipeline, "predict_proba")
        else None
    )
    names = list(dict.fromkeys([*(spec.metrics or DEFAULTS[task]), *_gate_metrics(spec)]))
    if probabilities is None:
        names = [n for n in names if n not in ("roc_auc", "log_loss")]
    classes = list(pipeline.classes_) if classifier else None
    metrics = compute_metrics(names, test_y, predictions, probabilities, classes)
    log(f"held-out metrics on {len(test_x)} rows: {metrics}", started)
    exported = export(pipeline, numeric, categorical, classifier=classifier)
    parity = check_parity(exported, pipeline, test_x, numeric, categorical, classifier=classifier)
    log(
        f"ONNX export: {len(exported)} bytes, parity max deviation {parity.max_deviation:.3g}",
        started,
    )
    rival = compare(champion, store, test_x, test_y, names, classifier=classifier)
    if rival is not None:
        log(f"champion v{rival.version}: {rival.metrics}", started)
    directory = pvc_uri(claim, "models", namespace, spec.model, run)
    signature = ModelSignature(
        task=task,
        features=[FeatureSignature(name=f.name, type=f.type) for f in schema.features],
        class_labels=[str(c) for c in classes] if classes else None,
    )
    card = {
        "format": MODEL_CARD_FORMAT,
        "signature": signature.model_dump(mode="json", by_alias=True),
        "estimator": spec.estimator.final_class,
        "params": dict(spec.estimator.params),
        "datasetDigest": digest,
        "seed": spec.split.seed,
        "libraries": _versions(),
        "metrics": metrics,
        "parity": {"maxDeviation": parity.max_deviation},
    }
    card_json = json.dumps(card, indent=1)
    model = embed_card(exported, card_json)
    final = check_parity(model, pipeline, test_x, numeric, categorical, classifier=classifier)
    if final.max_deviation != parity.max_deviation:  # metadata alone changed: never expected
        raise ParityFailed(
            f"the model with its card embedded deviates by {final.max_deviation:.3g}, without "
            f"it by {parity.max_deviation:.3g}: the card would not describe the stored model"
        )
    log(f"card embedded: {len(model)} bytes, parity re-checked on them", started)
    published = store.publish(
        directory,
        {
            "model.onnx": model,
            "metrics.json": json.dumps(metrics, indent=1).encode(),
            "card.json": card_json.encode(),
            "examples.json": examples(test_x, predictions, probabilities, classifier=classifier),
        },
    )
    if not published:
        # An earlier attempt of this run (killed before reporting) stored its files, which are
        # never rewritten: the result must describe what is stored.
        metrics = json.loads(store.read_bytes(f"{directory}/metrics.json"))
    stored = store.read_bytes(f"{directory}/model.onnx")
    sha256 = hashlib.sha256(stored).hexdigest()
    log(f"stored {directory} (sha256 {sha256[:12]})", started)
    predicted = (
        final.predictions
        if stored == model
        else predictions_of(run_onnx(stored, test_x, numeric, categorical), classifier=classifier)
    )
    stats = None if classifier else _read_stats(store, stats_uri, started)
    baseline = prediction_baseline(predicted, classes=signature.class_labels, stats=stats)
    described = f"{baseline.rows} rows in {len(baseline.counts)} slots" if baseline else "none"
    log(f"prediction baseline of the stored model: {described}", started)
    return TrainReport(
        sha256=sha256,
        model_uri=f"{directory}/model.onnx",
        examples_uri=f"{directory}/examples.json",
        metrics=metrics,
        champion=rival,
        signature=signature,
        max_deviation=parity.max_deviation,
        libraries=_versions(),
        held_out=len(test_x),
        fit_seconds=round(fit_seconds, 3),
        seconds=round(time.perf_counter() - started, 3),
        prediction_baseline=baseline,
    )


def _read_stats(store: ArtifactStore, uri: str | None, since: float) -> dict[str, Any] | None:
    """The Dataset version's stats document, or None (logged) when there is none to read: the
    model is still good, only its prediction baseline is missing."""
    if uri is None:
        return None
    try:
        document = json.loads(store.read_bytes(uri))
    except (ArtifactError, OSError, ValueError) as error:
        log(f"no prediction baseline: {uri} cannot be read ({error})", since)
        return None
    return document if isinstance(document, dict) else None


def examples(
    held_out: pd.DataFrame,
    predictions: Any,
    probabilities: Any,
    *,
    classifier: bool,
    rows: int = EXAMPLE_ROWS,
) -> bytes:
    """The first held-out rows with their predictions (`flywheel.dev/examples/v1`): the
    parity check has shown that the ONNX model answers the same, so any server of this
    version can be checked against them."""
    head = held_out.head(rows)
    document: dict[str, Any] = {
        "format": EXAMPLES_FORMAT,
        "features": list(head.columns),
        "rows": [
            [None if pd.isna(v) else (v if isinstance(v, str) else float(v)) for v in row]
            for row in head.itertuples(index=False)
        ],
    }
    if classifier:
        document["labels"] = [str(p) for p in list(predictions)[:rows]]
        if probabilities is not None:
            document["probabilities"] = [[float(p) for p in r] for r in probabilities[:rows]]
    else:
        document["values"] = [float(p) for p in list(predictions)[:rows]]
    return json.dumps(document, indent=1).encode()


def _gate_metrics(spec: TrainingRunSpec) -> list[str]:
    gates = spec.validation
    if gates is None:
        return []
    names: list[str] = [t.metric for t in gates.thresholds or ()]
    return names + ([gates.compare_to.metric] if gates.compare_to else [])


def _versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in LIBRARIES}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the training Job."""
    words = sys.argv[1:] if argv is None else argv
    if words in (["--help"], ["-h"]):
        print(__doc__)
        return ExitCode.SUCCESS
    np.random.seed(0)  # estimators without random_state stay reproducible
    try:
        args = TrainArgs.parse(words)
    except ValidationError as error:
        failure = JobFailure(reason=FailureReason.INVALID_SPEC, message=str(error))
        given = dict(zip(words[::2], words[1::2], strict=False)).get("--termination-log")
        write_result(failure, Path(given) if given else TERMINATION_LOG)
        return ExitCode.NOT_RETRYABLE
    try:
        report = train(
            args.spec,
            namespace=args.namespace,
            run=args.run,
            snapshot_uri=args.snapshot,
            digest=args.digest,
            claim=args.claim,
            store=ArtifactStore(args.artifacts_root),
            champion=args.champion,
            stats_uri=args.stats,
        )
    except (InvalidEstimator, ParityFailed, DigestMismatch) as error:
        write_result(JobFailure(reason=error.reason, message=str(error)), args.termination_log)
        return ExitCode.NOT_RETRYABLE
    except ValueError as error:  # scikit-learn refusing the data or the parameters
        message = f"{type(error).__name__}: {error}"
        failure = JobFailure(reason=FailureReason.TRAINING_FAILED, message=message)
        write_result(failure, args.termination_log)
        return ExitCode.NOT_RETRYABLE
    write_result(report, args.termination_log)
    return ExitCode.SUCCESS


if __name__ == "__main__":
    sys.exit(main())
