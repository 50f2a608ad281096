"""`python -m flywheel.jobs.train`: train, evaluate, export and check one TrainingRun.

Input: the TrainingRun spec as JSON, its identity, the pinned Dataset snapshot URI and digest,
the artifacts claim. Output: `models/<namespace>/<model>/<run>/{model.onnx,metrics.json,
card.json}` and a result document in the termination message: `{"ok": true, "sha256",
"modelURI", "metrics", "signature", ...}` or `{"ok": false, "reason", "message"}` with reason
`InvalidEstimator`, `InvalidSpec`, `OnnxParityFailed`, `DatasetDigestMismatch` or
`TrainingFailed`. Exit code 0 on success, 3 for a code/spec/data problem that a retry cannot fix
(the Job's podFailurePolicy stops on it), 1 otherwise (a crash: the Job retries).

With `--champion`, the champion's ONNX model is re-scored on the same held-out rows, so the
operator's champion gate compares like with like. Progress and timings go to stderr (the pod log).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import sys
import time
import zlib
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError
from sklearn.model_selection import train_test_split

from flywheel.api.estimators import task_of
from flywheel.api.trainingrun import TrainingRunSpec
from flywheel.artifacts import MOUNT_ROOT, ArtifactStore, pvc_uri
from flywheel.data.schema import ResolvedSchema
from flywheel.data.snapshot import content_digest
from flywheel.jobs.ingest import TERMINATION_LOG, report
from flywheel.training.champion import Champion, compare
from flywheel.training.export import ParityFailed, check_parity, export
from flywheel.training.metrics import DEFAULTS, compute_metrics
from flywheel.training.model import InvalidEstimator, build_pipeline

NOT_RETRYABLE = 3
LIBRARIES = ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "pandas")
COMPRESS_ABOVE = 3000
"""Termination messages are capped at 4096 bytes: larger results are sent zlib+base64."""
EXAMPLE_ROWS = 20
"""Held-out rows recorded with their predictions in examples.json."""


def log(message: str, since: float) -> None:
    """One progress line with the seconds elapsed since the start."""
    print(f"[{time.perf_counter() - since:7.2f}s] {message}", file=sys.stderr, flush=True)


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
    champion: Champion | None = None,
) -> dict[str, Any]:
    """Fit, evaluate, export, check parity, store the artifacts; the result document."""
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
    model = export(pipeline, numeric, categorical, classifier=classifier)
    parity = check_parity(model, pipeline, test_x, numeric, categorical, classifier=classifier)
    log(
        f"ONNX export: {len(model)} bytes, parity max deviation {parity.max_deviation:.3g}", started
    )
    rival = compare(champion, store, test_x, test_y, names, classifier=classifier)
    if rival is not None:
        log(f"champion v{rival['version']}: {rival['metrics']}", started)
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
    published = store.publish(
        directory,
        {
            "model.onnx": model,
            "metrics.json": json.dumps(metrics, indent=1).encode(),
            "card.json": json.dumps(card, indent=1).encode(),
            "examples.json": examples(test_x, predictions, probabilities, classifier=classifier),
        },
    )
    if not published:
        # An earlier attempt of this run (killed before reporting) stored its files, which are
        # never rewritten: the result must describe what is stored.
        metrics = json.loads(store.read_bytes(f"{directory}/metrics.json"))
    sha256 = hashlib.sha256(store.read_bytes(f"{directory}/model.onnx")).hexdigest()
    log(f"stored {directory} (sha256 {sha256[:12]})", started)
    return {
        "ok": True,
        "sha256": sha256,
        "modelURI": f"{directory}/model.onnx",
        "examplesURI": f"{directory}/examples.json",
        "metrics": metrics,
        "champion": rival,
        "signature": signature,
        "maxDeviation": parity.max_deviation,
        "libraries": _versions(),
        "heldOut": len(test_x),
        "fitSeconds": round(fit_seconds, 3),
        "seconds": round(time.perf_counter() - started, 3),
    }


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
        "format": "flywheel.dev/examples/v1",
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


def encode_result(result: dict[str, Any]) -> dict[str, Any]:
    """The result as sent: compressed when it would not fit a termination message."""
    text = json.dumps(result, separators=(",", ":"))
    if len(text) <= COMPRESS_ABOVE:
        return result
    return {"z": base64.b64encode(zlib.compress(text.encode(), 9)).decode()}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the training Job."""
    parser = argparse.ArgumentParser(prog="python -m flywheel.jobs.train", description=__doc__)
    for flag in ("--spec", "--namespace", "--run", "--snapshot", "--digest", "--claim"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--champion", help="JSON: the champion to re-score (see Champion)")
    parser.add_argument("--artifacts-root", type=Path, default=MOUNT_ROOT)
    parser.add_argument("--termination-log", type=Path, default=TERMINATION_LOG)
    args = parser.parse_args(argv)
    np.random.seed(0)  # estimators without random_state stay reproducible
    try:
        spec = TrainingRunSpec.model_validate(json.loads(args.spec))
        champion = Champion.model_validate_json(args.champion) if args.champion else None
        result = train(
            spec,
            namespace=args.namespace,
            run=args.run,
            snapshot_uri=args.snapshot,
            digest=args.digest,
            claim=args.claim,
            store=ArtifactStore(args.artifacts_root),
            champion=champion,
        )
    except (InvalidEstimator, ParityFailed, DigestMismatch) as error:
        report({"ok": False, "reason": error.reason, "message": str(error)}, args.termination_log)
        return NOT_RETRYABLE
    except ValidationError as error:
        report({"ok": False, "reason": "InvalidSpec", "message": str(error)}, args.termination_log)
        return NOT_RETRYABLE
    except ValueError as error:  # scikit-learn refusing the data or the parameters
        message = f"{type(error).__name__}: {error}"
        report({"ok": False, "reason": "TrainingFailed", "message": message}, args.termination_log)
        return NOT_RETRYABLE
    report(encode_result(result), args.termination_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
