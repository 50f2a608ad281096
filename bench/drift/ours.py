"""Ours: Flywheel's drift decision, built from the product's own code paths.

- Baseline: `flywheel.data.stats.compute_stats` on the reference frame (what the ingest Job writes
  as `stats.json`: 10 quantile bins per numeric feature, top-20 categories), turned into count
  vectors by `flywheel.drift.baseline.feature_baselines`.
- Window counts: the serving pods' binning classes (`flywheel_serving.bins.NumericBins` on the
  float32 matrix, `CategoricalBins` per distinct value, as `Monitor.flush` counts a batch), i.e.
  the increase of `flywheel_feature_values_total` over the window.
- Decision: `flywheel.drift.baseline.feature_drift` per feature with a method and threshold (the
  ModelMonitor's `dataDrift`; the product default is PSI > 0.2).
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

from drift.streams import CATEGORICAL, FEATURES, NUMERIC, Frame
from flywheel.api.dataset import DatasetSpec
from flywheel.artifacts import ArtifactStore
from flywheel.data.stats import bin_counts
from flywheel.drift.baseline import FeatureBaseline, feature_baselines, feature_drift
from flywheel.drift.statistics import Method
from flywheel.jobs.ingest import ingest
from flywheel_serving.bins import CategoricalBins, NumericBins

Counts = dict[str, np.ndarray[Any, Any]]
CONFIGS: list[tuple[str, Method, float]] = [
    ("ours psi>0.2", "psi", 0.2),
    ("ours js>0.1", "jensenshannon", 0.1),
    ("ours wass>0.1", "wasserstein", 0.1),
]
"""(row name, method, threshold): the product default first, then two other product options."""


@dataclass
class Ours:
    """The baseline and the serving binners of one reference frame."""

    baselines: dict[str, FeatureBaseline]
    numeric: NumericBins
    categorical: list[CategoricalBins]
    stats: dict[str, Any]

    @classmethod
    def fit(cls, frame: Frame) -> Ours:
        """The stats document of the reference, as the ingest Job computes it."""
        data = pd.DataFrame(frame.numeric, columns=NUMERIC)
        for name in CATEGORICAL:
            data[name] = frame.categorical[name]
        data["label"] = np.arange(len(data)) % 2
        features = [
            {"name": n, "type": "numeric" if n in NUMERIC else "categorical"} for n in FEATURES
        ]
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
        return cls(feature_baselines(stats), numeric, categorical, stats)

    def counts(self, frame: Frame) -> Counts:
        """The window's counts per feature in serving slot order (what the monitor reads)."""
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
        return found

    def check(self, frame: Frame, counts: Counts) -> None:
        """The serving counts agree with the stats module's `bin_counts` rule, applied in
        float32 as serving does (float32 inputs against float32-rounded edges)."""
        for i, name in enumerate(NUMERIC):
            edges = [float(np.float32(e)) for e in self.stats["features"][i]["histogram"]["edges"]]
            expected = [*bin_counts(frame.numeric[:, i].astype(np.float32), edges), 0]
            if counts[name].tolist() != expected:
                raise AssertionError(f"{name}: serving bins differ from stats.bin_counts")

    def flagged(self, counts: Counts, method: Method, threshold: float) -> list[str]:
        """The features whose score exceeds the threshold."""
        found = []
        for name in FEATURES:
            drift = feature_drift(self.baselines[name], counts[name], method, threshold)
            if drift is not None and drift.drifted:
                found.append(name)
        return found

    def time_decision(self, counts: Counts, method: Method, threshold: float, loops: int) -> float:
        """Median seconds to score all 20 features from counts, over `loops` decisions."""
        timings = []
        for _ in range(loops):
            started = time.perf_counter_ns()
            self.flagged(counts, method, threshold)
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
