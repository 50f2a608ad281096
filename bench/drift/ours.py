"""Ours: Flywheel's drift decision, built from the product's own code paths.

- Baseline: `flywheel.data.stats.compute_stats` through the ingest Job on the reference frame
  (what it writes as `stats.json`: 10 quantile bins per numeric feature, top-20 categories),
  turned into count vectors by `flywheel.drift.baseline.feature_baselines`; the prediction's
  baseline by `prediction_baseline` from the classifier's predictions on the reference's
  held-out rows (its last fifth), as the product records them at training time.
- Window counts: the serving pods' binning classes (`flywheel_serving.bins.NumericBins` on the
  float32 matrix, NaN in the null slot; `CategoricalBins` per distinct value, as `Monitor.flush`
  counts a batch), i.e.
  the increase of `flywheel_feature_values_total` over the window; predicted classes counted
  per class, then `__unseen__`, as `flywheel_predictions_total`.
- Decision: `flywheel.drift.decision.judge` per column with a `DriftRule`, `tests` = the 21
  columns judged (20 features and the prediction); a window alarms when any column drifts
  (`minDriftedFeatures: 1`).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drift.streams import (
    CATEGORICAL,
    CLASSES,
    COLUMNS,
    FEATURES,
    HELD_OUT,
    NUMERIC,
    PREDICTION,
    Frame,
    latent_label,
    reference,
)
from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import ArtifactStore
from flywheel.data.stats import bin_counts
from flywheel.drift.baseline import FeatureBaseline, feature_baselines, prediction_baseline
from flywheel.drift.decision import DriftRule, FeatureVerdict, judge
from flywheel.jobs.ingest import ingest
from flywheel_serving.bins import CategoricalBins, NumericBins

Array = np.ndarray[Any, Any]
Counts = dict[str, Array]
RULES: list[tuple[str, DriftRule]] = [
    ("ours", DriftRule()),
    ("ours a=0.05", DriftRule(alpha=0.05)),
    ("ours js", DriftRule(method="jensenshannon")),
    ("ours psi>0.2", DriftRule(decision="Threshold", threshold=0.2)),
]
"""(row name, rule): the product default first, then for context: the default at alpha 0.05,
Jensen-Shannon calibrated and the old fixed rule (PSI > 0.2)."""


@dataclass
class Ours:
    """The baselines and the serving binners of one reference frame."""

    baselines: dict[str, FeatureBaseline]
    numeric: NumericBins
    categorical: list[CategoricalBins]
    stats: dict[str, Any]

    @classmethod
    def fit(cls, frame: Frame) -> Ours:
        """The stats document of the reference, as the ingest Job computes it, and the
        prediction baseline from the held-out rows' predictions."""
        stats = _ingest(frame)
        by_name = {f["name"]: f for f in stats["features"]}
        numeric = NumericBins.build([(n, list(by_name[n]["histogram"]["edges"])) for n in NUMERIC])
        categorical = [
            CategoricalBins.build(
                n,
                [str(c["value"]) for c in by_name[n]["categories"]],
                by_name[n].get("otherValues", []),
            )
            for n in CATEGORICAL
        ]
        held_out = frame.prediction[int(len(frame.prediction) * (1 - HELD_OUT)) :]
        recorded = {c: int(v) for c, v in Counter(held_out.tolist()).items()}
        predicted, source = prediction_baseline(stats, CLASSES, recorded)
        if predicted is None or source != "heldOutPredictions":
            raise AssertionError(f"prediction baseline from {source}")
        return cls({**feature_baselines(stats), PREDICTION: predicted}, numeric, categorical, stats)

    def counts(self, frame: Frame) -> Counts:
        """The window's counts per column in serving slot order (what the monitor reads)."""
        flat = self.numeric.count(frame.numeric.astype(np.float32))
        found: Counts = {}
        start = 0
        for name, size in zip(self.numeric.names, self.numeric.sizes.tolist(), strict=True):
            found[name] = flat[start : start + size + 2]
            start += size + 2
        for bins in self.categorical:
            slots = np.zeros(len(bins.labels), dtype=np.int64)
            for value, seen in Counter(frame.categorical[bins.name].tolist()).items():
                slots[bins.position(value)] += seen
            found[bins.name] = slots
        classes = np.searchsorted(np.asarray(CLASSES), frame.prediction)
        found[PREDICTION] = np.bincount(classes, minlength=len(CLASSES) + 1)
        return found

    def check(self, frame: Frame, counts: Counts) -> None:
        """The serving counts agree with the stats module's `bin_counts` rule, applied in
        float32 as serving does (float32 inputs against float32-rounded edges), NaN aside."""
        for i, name in enumerate(NUMERIC):
            edges = [float(np.float32(e)) for e in self.stats["features"][i]["histogram"]["edges"]]
            values = frame.numeric[:, i].astype(np.float32)
            present = values[~np.isnan(values)]
            expected = [*bin_counts(present, edges), int(values.size - present.size)]
            if counts[name].tolist() != expected:
                raise AssertionError(f"{name}: serving bins differ from stats.bin_counts")

    def verdicts(self, counts: Counts, rule: DriftRule) -> dict[str, FeatureVerdict]:
        """Every column's verdict under `rule` (columns without values left out)."""
        found = {}
        for name in COLUMNS:
            verdict = judge(self.baselines[name], counts[name], rule, tests=len(COLUMNS))
            if verdict is not None:
                found[name] = verdict
        return found

    def flagged(self, counts: Counts, rule: DriftRule) -> dict[str, str]:
        """The columns that drifted, with the check that fired (`Shift`, `NewValues`,
        `Missing`)."""
        return {n: str(v.reason) for n, v in self.verdicts(counts, rule).items() if v.drifted}

    def time_decision(self, counts: Counts, rule: DriftRule, loops: int) -> float:
        """Median seconds to judge all 21 columns from counts, over at least `loops` decisions
        and at least a second (at most 1,000 decisions)."""
        timings: list[int] = []
        while len(timings) < loops or (sum(timings) < 1e9 and len(timings) < 1000):
            started = time.perf_counter_ns()
            self.verdicts(counts, rule)
            timings.append(time.perf_counter_ns() - started)
        return float(np.median(timings)) / 1e9

    def time_binning(self, frame: Frame, loops: int) -> float:
        """Median seconds to bin a raw window into counts (serving does this in batches)."""
        timings = []
        for _ in range(loops):
            started = time.perf_counter_ns()
            self.counts(frame)
            timings.append(time.perf_counter_ns() - started)
        return float(np.median(timings)) / 1e9


def _ingest(frame: Frame) -> dict[str, Any]:
    """The reference's `stats.json`, through the ingest Job on a Parquet file."""
    data = pd.DataFrame(frame.numeric, columns=NUMERIC)
    for name in CATEGORICAL:
        data[name] = frame.categorical[name]
    data["label"] = latent_label(reference())
    features = [{"name": n, "type": "numeric" if n in NUMERIC else "categorical"} for n in FEATURES]
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "reference.parquet"
        data.to_parquet(source, index=False)
        spec = DatasetSpec.model_validate(
            {
                "source": {"uri": f"file://{source}"},
                "schema": {"label": "label", "features": features},
                "statistics": {"bins": 10, "topK": 20},
            }
        )
        store = ArtifactStore(Path(scratch))
        report = ingest(
            spec, namespace="bench", name="ref", claim="c", store=store, previous_digest=None
        )
        stats: dict[str, Any] = json.loads(store.read_bytes(report.stats_uri))
    return stats
