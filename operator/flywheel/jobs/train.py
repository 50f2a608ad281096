"""`python -m flywheel.jobs.train`: train, evaluate, export and check one TrainingRun.

Input: the TrainingRun spec as JSON, its identity, the pinned Dataset snapshot URI and digest,
the artifacts claim. Output: `models/<namespace>/<model>/<run>/{model.onnx,metrics.json,
card.json}` and a result document in the termination message: `{"ok": true, "sha256",
"modelURI", "metrics", "signature", ...}` or `{"ok": false, "reason", "message"}` with reason
`InvalidEstimator`, `OnnxParityFailed`, `DatasetDigestMismatch` or `TrainingFailed`. Exit code 0
on success, 3 for a code/spec problem that a retry cannot fix (the Job's podFailurePolicy
stops on it), 1 otherwise.
"""

from __future__ import annotations

import argparse
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
from sklearn.model_selection import train_test_split

from flywheel.api.estimators import task_of
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import MOUNT_ROOT, ArtifactStore, pvc_uri
from flywheel.data.schema import ResolvedSchema
from flywheel.data.snapshot import content_digest
from flywheel.jobs.ingest import TERMINATION_LOG, report
from flywheel.training.export import ParityFailed, check_parity, export
from flywheel.training.metrics import DEFAULTS, compute_metrics
from flywheel.training.model import InvalidEstimator, build_pipeline

NOT_RETRYABLE = 3
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")


class DigestMismatch(Exception):
    """The snapshot's content does not match the pinned digest."""

    reason = "DatasetDigestMismatch"


def train(
    spec: TrainingRunSpec,
    *,
    namespace: str,
    run: str,
    snapshot_uri: str,
    digest: str,
    claim: str,
    store: ArtifactStore,
) -> dict[str, Any]:
    """Fit, evaluate, export, check parity, store the artifacts; the result document."""
    started = time.perf_counter()
    frame = pd.read_parquet(io.BytesIO(store.read_bytes(snapshot_uri)))
    if content_digest(frame) != digest:
        raise DigestMismatch(f"{snapshot_uri} does not match the pinned digest {digest}")
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
    model = export(pipeline, numeric, categorical, classifier=classifier)
    parity = check_parity(model, pipeline, test_x, numeric, categorical, classifier=classifier)
    sha256 = hashlib.sha256(model).hexdigest()
    directory = pvc_uri(claim, "models", namespace, spec.model, run)
    signature = {
        "task": task,
        "features": [{"name": f.name, "type": f.type} for f in schema.features],
        "classLabels": [str(c) for c in classes] if classes else None,
    }
    card = {
        "format": "flywheel.dev/model-card/v1",
        "signature": signature,
        "estimator": spec.estimator.final_class,
        "params": dict(spec.estimator.params),
        "datasetDigest": digest,
        "seed": spec.split.seed,
        "libraries": _versions(),
        "metrics": metrics,
        "parity": {"maxDeviation": parity.max_deviation},
    }
    store.publish(
        directory,
        {
            "model.onnx": model,
            "metrics.json": json.dumps(metrics, indent=1).encode(),
            "card.json": json.dumps(card, indent=1).encode(),
        },
    )
    return {
        "ok": True,
        "sha256": sha256,
        "modelURI": f"{directory}/model.onnx",
        "metrics": metrics,
        "signature": signature,
        "maxDeviation": parity.max_deviation,
        "libraries": _versions(),
        "heldOut": len(test_x),
        "fitSeconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }


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
    parser = argparse.ArgumentParser(prog="python -m flywheel.jobs.train", description=__doc__)
    for flag in ("--spec", "--namespace", "--run", "--snapshot", "--digest", "--claim"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--artifacts-root", type=Path, default=MOUNT_ROOT)
    parser.add_argument("--termination-log", type=Path, default=TERMINATION_LOG)
    args = parser.parse_args(argv)
    np.random.seed(0)  # estimators without random_state stay reproducible
    try:
        spec = TrainingRunSpec.model_validate(json.loads(args.spec))
        result = train(
            spec,
            namespace=args.namespace,
            run=args.run,
            snapshot_uri=args.snapshot,
            digest=args.digest,
            claim=args.claim,
            store=ArtifactStore(args.artifacts_root),
        )
    except (InvalidEstimator, ValueError) as error:
        reason = getattr(error, "reason", "InvalidEstimator")
        report({"ok": False, "reason": reason, "message": str(error)}, args.termination_log)
        return NOT_RETRYABLE
    except (ParityFailed, DigestMismatch) as error:
        report({"ok": False, "reason": error.reason, "message": str(error)}, args.termination_log)
        return NOT_RETRYABLE
    report(result, args.termination_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
