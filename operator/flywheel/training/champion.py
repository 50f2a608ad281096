"""Re-score the champion's ONNX model on the new run's held-out rows.

Validation gates compare the new model with the champion on the same data. The champion is
given by the operator (version, artifact URI, sha256, feature signature, recorded metrics); its
file is verified against the sha256 before onnxruntime loads it. When the champion cannot score
the new rows (its features are gone, its classes differ, its file is missing or altered), the
comparison falls back to the champion's recorded metrics and says so: those come from a
different held-out split, which the gate's message makes visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from flywheel.artifacts import ArtifactError, ArtifactStore
from flywheel.interfaces.jobs import Champion, ChampionReport
from flywheel.training.export import run_onnx
from flywheel.training.metrics import compute_metrics


class NotComparable(Exception):
    """The champion cannot score the new held-out rows."""


def rescore(
    champion: Champion,
    store: ArtifactStore,
    held_out: pd.DataFrame,
    truth: Any,
    names: Iterable[str],
    *,
    classifier: bool,
) -> dict[str, float]:
    """The champion's metrics on the held-out rows; NotComparable when it cannot score them."""
    try:
        model = store.read_bytes(champion.uri)
    except (ArtifactError, OSError) as error:
        raise NotComparable(f"its model file cannot be read ({error})") from error
    if hashlib.sha256(model).hexdigest() != champion.sha256:
        raise NotComparable("its model file does not match its recorded sha256")
    missing = [f.name for f in champion.features if f.name not in held_out.columns]
    if missing:
        raise NotComparable(f"the new data lacks its features {', '.join(missing[:5])}")
    numeric = [f.name for f in champion.features if f.type == "numeric"]
    categorical = [f.name for f in champion.features if f.type == "categorical"]
    outputs = run_onnx(model, held_out, numeric, categorical)
    wanted = list(names)
    if not classifier:
        predictions = np.asarray(outputs[0], dtype=float).ravel()
        return compute_metrics(wanted, truth, predictions, None, None)
    labels = np.asarray(outputs[0]).ravel().astype(str)
    classes = champion.class_labels or []
    unseen = sorted(set(np.asarray(truth).astype(str)) - set(classes))
    if unseen:
        raise NotComparable(f"the new data has classes it never saw ({', '.join(unseen[:5])})")
    probabilities = np.asarray(outputs[1]) if len(outputs) > 1 else None
    if probabilities is None:
        wanted = [n for n in wanted if n not in ("roc_auc", "log_loss")]
    try:
        return compute_metrics(wanted, truth, labels, probabilities, classes)
    except ValueError as error:
        raise NotComparable(str(error)) from error


def compare(
    champion: Champion | None,
    store: ArtifactStore,
    held_out: pd.DataFrame,
    truth: Any,
    names: Iterable[str],
    *,
    classifier: bool,
) -> ChampionReport | None:
    """The champion part of the training result: re-scored, or recorded metrics and why."""
    if champion is None:
        return None
    try:
        metrics = rescore(champion, store, held_out, truth, names, classifier=classifier)
    except NotComparable as error:
        return ChampionReport(
            version=champion.version,
            metrics=champion.metrics,
            rescored=False,
            note=f"champion v{champion.version} cannot be re-scored: {error}; "
            "compared with its recorded metrics",
        )
    return ChampionReport(version=champion.version, metrics=metrics, rescored=True)
