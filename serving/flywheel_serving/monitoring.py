"""Monitoring counters on the training baseline's bins: features, predictions, label feedback.

Requests are taken as they are answered and counted in batches (`FLUSH_ROWS` rows or
`FLUSH_REQUESTS` requests), and always before a scrape, with a few vectorised numpy calls per
batch: a per-value `Counter.inc` would cost more than the inference, and even one numpy pass per
request costs more in call overhead than in counting. Counts live in plain arrays, exposed at
scrape time by a custom collector. The series are fixed by the baseline (features x bins,
classes), never by traffic.

Binning (the `flywheel.dev/stats/v1` rule, docs/stats-format.md): a numeric value falls in
position 0 (underflow, below the first edge), 1..B (bin i holds `edges[i-1] <= x < edges[i]`,
the last bin also holds the last edge) or B+1 (overflow), the positions of the baseline's
`histogram.counts`; missing values count as `null`. A categorical value counts as itself when it
is one of the baseline's top categories, as `__other__` when it is one of its other values, as
`__unseen__` otherwise, and as `__null__` when missing.

One request cannot spoil the others': each is checked as it is taken (its arrays' shapes and
types against the model's features and classes: attribute reads, no numpy pass), and each batch
before it is counted (no NaN input, every probability and predicted value finite, every
predicted class one of the model's: one vectorised check per batch; only a batch that fails it
is looked at request by request). A request that fails is left out whole and counted in
`flywheel_monitoring_rejected_rows_total{reason}`; a batch is tallied first and added to the
counts only once all of it is tallied, so `flywheel_monitored_rows_total` is always the number
of rows in the histograms, save for refused rows' nulls (below). Feedback that would make an
error total non-finite is refused (422) before anything is counted.

Rows refused (422) for their values are never answered, but their missing values are what a
rising null rate looks like, so they are not invisible: `refuse` (called before the 422 goes
out) counts the rows in `flywheel_refused_rows_total{reason}` and adds each feature's missing
values of those rows to that feature's null slot (`null`, `__null__`), and nothing else of them.
Each feature's histogram is thus the monitored rows plus the refused rows where that feature was
missing, and its null share can be compared with the baseline's `nulls`.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flywheel_serving import names
from flywheel_serving.bins import CategoricalBins, NumericBins
from flywheel_serving.errors import Unprocessable
from flywheel_serving.feedback import error_sums
from flywheel_serving.model import Inputs, Prediction

logger = logging.getLogger("flywheel_serving")
SCORE_BUCKETS = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0]
WHY: dict[str, str] = {
    "shape": "its arrays do not fit the model's features or classes",
    "non_finite": "a NaN input, or a NaN or infinite probability or predicted value",
    "unknown_class": "a predicted class the model does not have",
    "error": "counting it failed",
}
"""What each reason of `flywheel_monitoring_rejected_rows_total` means."""
REFUSED_WHY: dict[str, str] = {
    names.REFUSED_MISSING: "a missing value (null, NaN, a v1 instance without the feature)",
    names.REFUSED_OUT_OF_RANGE: "a numeric value beyond float32 or infinite",
    names.REFUSED_NOT_A_NUMBER: "text (v1: anything but a number) for a numeric feature",
    names.REFUSED_NOT_A_CATEGORY: "an infinite number for a categorical feature",
    names.REFUSED_BOOL: "a BOOL tensor for a feature",
    names.REFUSED_NON_FINITE_OUTPUT: "the model's answer for the rows is not finite",
}
"""What each reason of `flywheel_refused_rows_total` means."""
SCORE_ARRAY = np.array(SCORE_BUCKETS)
FLUSH_ROWS = 1024
"""Rows taken before they are counted. numpy's per-call cost (several µs a call with the cold
caches of a server between requests) dwarfs its per-value cost, so one count per ~1,000 rows
costs a fraction of one per request; a scrape counts whatever is pending first."""
FLUSH_REQUESTS = 32
"""Requests taken before they are counted, whatever their size: joining many tiny arrays costs
more than it saves, and the count that one request in this many does stays short."""
Part = tuple[Inputs, Prediction]


@dataclass
class _Tally:
    """What one batch adds to the counts, computed in full before any of it is added."""

    rows: int = 0
    features: np.ndarray[Any, Any] | None = None
    predictions: np.ndarray[Any, Any] | None = None
    scores: np.ndarray[Any, Any] | None = None
    score_sum: float = 0.0
    rejected: Counter[str] = field(default_factory=Counter)


class Monitor:
    """All monitoring counts of one served model."""

    def __init__(
        self,
        model: str,
        version: str,
        baseline: dict[str, Any] | None,
        *,
        features: Sequence[tuple[str, str]],
        class_labels: Sequence[str],
    ) -> None:
        """`features`: (name, type) in graph order; numeric ones are the Inputs matrix columns."""
        self.model, self.version = model, version
        stats = {f["name"]: f for f in (baseline or {}).get("features", [])}
        numeric_names = [n for n, t in features if t == "numeric"]
        binned = [
            (column, n, list(stats[n]["histogram"]["edges"]))
            for column, n in enumerate(numeric_names)
            if n in stats and (stats[n].get("histogram") or {}).get("edges")
        ]
        self.numeric = NumericBins.build([(n, e) for _, n, e in binned])
        self._columns = [c for c, _, _ in binned]
        self._all_columns = self._columns == list(range(len(numeric_names)))
        self.categorical = [
            CategoricalBins.build(
                n,
                [str(c["value"]) for c in stats[n].get("categories", [])],
                stats[n].get("otherValues", []),
            )
            for n, t in features
            if t == "categorical" and n in stats
        ]
        self.category_offsets = np.cumsum(
            [self.numeric.slots] + [len(c.labels) for c in self.categorical]
        ).tolist()
        slots = self.category_offsets[-1]
        self.features = np.zeros(slots, dtype=np.int64)
        self.classes = list(class_labels)
        label = (baseline or {}).get("label") or {}
        edges = (label.get("histogram") or {}).get("edges") if not self.classes else None
        self.prediction_bins = NumericBins.build([("prediction", list(edges))]) if edges else None
        self.class_index = {c: i for i, c in enumerate(self.classes)}
        width = len(self.classes) + 1 if self.classes else self._prediction_slots()
        self.predictions = np.zeros(width, dtype=np.int64)
        self.scores = np.zeros(len(SCORE_BUCKETS), dtype=np.int64)
        self.score_sum = 0.0
        self.rows = 0
        known = len(self.classes) + 1
        self.confusion = np.zeros((known, known), dtype=np.int64)
        self.labels = 0
        self.absolute_error = 0.0
        self.squared_error = 0.0
        self.rejected = dict.fromkeys(names.REJECT_REASONS, 0)
        """Rows left out of the counts, by reason."""
        self.refused = dict.fromkeys(names.REFUSE_REASONS, 0)
        """Rows refused (422) for their values, by reason; their nulls are in `features`."""
        self._null_slots = self._null_slot_of_each_feature()
        self._garbage_logged = False
        self._pending: list[Part] = []
        self._pending_rows = 0
        self._numeric_width = len(numeric_names)
        self._categorical_names = {n for n, t in features if t == "categorical"}
        self._score_width = len(self.classes) or None  # without a card: the first request's
        self._kind: tuple[bool, bool, bool] | None = None  # (labels, probabilities, values)

    def _null_slot_of_each_feature(self) -> dict[str, int]:
        """The slot in `features` of each monitored feature's missing values (its last)."""
        ends = np.cumsum(self.numeric.sizes + 2).tolist()
        slots = {name: end - 1 for name, end in zip(self.numeric.names, ends, strict=True)}
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            slots[bins.name] = offset + len(bins.labels) - 1
        return slots

    def _prediction_slots(self) -> int:
        return self.prediction_bins.slots if self.prediction_bins is not None else 0

    def observe(self, inputs: Inputs, prediction: Prediction) -> None:
        """Take one request's (or batch's) inputs and predictions; they are counted in batches
        (`FLUSH_ROWS` rows or `FLUSH_REQUESTS` requests), and always before a scrape, so scrapes
        see every row. A request whose arrays do not fit the model is left out (and counted as
        rejected) here, before it can spoil a batch."""
        problem = self._misshapen(inputs, prediction)
        if problem is not None:
            self._reject({"shape": _rows(inputs)}, problem)
            return
        if inputs.rows == 0:
            return
        self._pending.append((inputs, prediction))
        self._pending_rows += inputs.rows
        if self._pending_rows >= FLUSH_ROWS or len(self._pending) >= FLUSH_REQUESTS:
            self.flush()

    def _misshapen(self, inputs: Inputs, prediction: Prediction) -> str | None:
        """What does not fit the model in a request's arrays (shapes and types: attribute
        reads only, nothing that costs a numpy call), or None."""
        rows = inputs.rows
        if not isinstance(rows, int) or rows < 0:
            return f"a request of {rows!r} rows"
        numeric = inputs.numeric
        if numeric.shape != (rows, self._numeric_width) or numeric.dtype.kind != "f":
            return (
                f"numeric inputs {numeric.shape} {numeric.dtype}, expected "
                f"({rows}, {self._numeric_width}) floats"
            )
        if inputs.categorical.keys() != self._categorical_names:
            return (
                f"categorical inputs {sorted(inputs.categorical)}, expected "
                f"{sorted(self._categorical_names)}"
            )
        for name, column in inputs.categorical.items():
            if column.shape != (rows,):
                return f"categorical input {name} of shape {column.shape}, expected ({rows},)"
        labels, probabilities, values = (
            prediction.labels,
            prediction.probabilities,
            prediction.values,
        )
        kind = (labels is not None, probabilities is not None, values is not None)
        if self._kind is not None and kind != self._kind:
            return f"a prediction with (labels, probabilities, values) {kind}, not {self._kind}"
        if self.classes and (labels is None or values is not None):
            return "a classifier's prediction without labels, or with values"
        if not any(kind):
            return "a prediction without labels, probabilities or values"
        if labels is not None and labels.shape != (rows,):
            return f"labels of shape {labels.shape}, expected ({rows},)"
        if probabilities is not None:
            width = self._score_width or (probabilities.shape[1] if probabilities.ndim == 2 else 0)
            if probabilities.shape != (rows, width) or width < 1 or probabilities.dtype.kind != "f":
                return (
                    f"probabilities {probabilities.shape} {probabilities.dtype}, expected "
                    f"({rows}, {width or 'classes'}) floats"
                )
        if values is not None and (values.shape != (rows,) or values.dtype.kind != "f"):
            return f"values {values.shape} {values.dtype}, expected ({rows},) floats"
        if probabilities is not None:
            self._score_width = probabilities.shape[1]
        self._kind = kind
        return None

    def flush(self) -> None:
        """Count everything taken so far: a few vectorised calls for the whole batch. Should
        that fail (a bug: every request was checked), each request is counted on its own, so
        only one that cannot be counted is left out."""
        if not self._pending:
            return
        parts, self._pending, self._pending_rows = self._pending, [], 0
        try:
            self._apply(self._tally(parts))
        except Exception:
            logger.exception(
                "counting %d requests together failed: counting one by one", len(parts)
            )
            for part in parts:
                try:
                    self._apply(self._tally([part]))
                except Exception:
                    logger.exception("counting one request failed: its rows are left out")
                    self._reject({"error": part[0].rows})

    def _tally(self, parts: list[Part]) -> _Tally:
        """What a batch adds, its invalid requests left out; changes nothing itself."""
        tally = _Tally()
        while True:  # twice at most: what is left after the first pass is valid
            inputs = parts[0][0] if len(parts) == 1 else Inputs.concatenate([i for i, _ in parts])
            predictions = [p for _, p in parts]
            labels = (
                _joined([p.labels for p in predictions])
                if self.classes and predictions[0].labels is not None  # no card: no class names
                else None
            )
            probabilities = (
                _joined([p.probabilities for p in predictions])
                if predictions[0].probabilities is not None
                else None
            )
            values = (
                _joined([p.values for p in predictions])
                if predictions[0].values is not None
                else None
            )
            seen = Counter(labels.tolist()) if labels is not None else None
            invalid = self._invalid(parts, inputs, seen, probabilities, values)
            if not invalid:
                break
            for index, reason in invalid.items():
                tally.rejected[reason] += parts[index][0].rows
            parts = [part for index, part in enumerate(parts) if index not in invalid]
            if not parts:
                return tally
        tally.rows = inputs.rows
        features = np.zeros_like(self.features)
        if self.numeric.names:
            matrix = inputs.numeric if self._all_columns else inputs.numeric[:, self._columns]
            features[: self.numeric.slots] = self.numeric.count(matrix)
        for bins, offset in zip(self.categorical, self.category_offsets, strict=False):
            for value, count in Counter(inputs.categorical[bins.name].tolist()).items():
                features[offset + bins.position(value)] += count
        tally.features = features
        if seen is not None:
            classes = np.zeros_like(self.predictions)
            slot = self.class_index
            # Counting in C first, then one lookup per distinct label, beats sorting objects.
            for label, seen_count in seen.items():
                classes[slot[_text(label)]] += seen_count
            tally.predictions = classes
        if probabilities is not None and probabilities.size:
            # float32 probabilities can sum to 1.0000001: clip, so every score has a bucket.
            best = _row_max(probabilities)
            np.minimum(best, 1.0, out=best)
            tally.scores = np.bincount(
                np.searchsorted(SCORE_ARRAY, best), minlength=len(SCORE_BUCKETS)
            )
            tally.score_sum = float(best.sum())
        if values is not None and self.prediction_bins is not None:
            tally.predictions = self.prediction_bins.count(values.reshape(-1, 1))
        return tally

    def _invalid(
        self,
        parts: list[Part],
        inputs: Inputs,
        seen: Counter[Any] | None,
        probabilities: np.ndarray[Any, Any] | None,
        values: np.ndarray[Any, Any] | None,
    ) -> dict[int, str]:
        """The requests of a batch that must not be counted, and why: one vectorised check per
        array for the whole batch, and a look at single requests only when one fails."""
        bad: dict[int, str] = {}
        ends: np.ndarray[Any, Any] | None = None

        def mark(rows: np.ndarray[Any, Any], reason: str) -> None:
            nonlocal ends
            if ends is None:
                ends = np.cumsum([i.rows for i, _ in parts])
            for index in np.unique(np.searchsorted(ends, np.flatnonzero(rows), side="right")):
                bad.setdefault(int(index), reason)

        numeric = inputs.numeric
        if numeric.size and np.isnan(numeric).any():
            mark(np.isnan(numeric).any(axis=1), "non_finite")
        if probabilities is not None and not np.isfinite(probabilities).all():
            mark(~np.isfinite(probabilities).all(axis=1), "non_finite")
        if values is not None and not np.isfinite(values).all():
            mark(~np.isfinite(values), "non_finite")
        if seen is not None and any(_text(label) not in self.class_index for label in seen):
            for index, (_, prediction) in enumerate(parts):
                assert prediction.labels is not None  # checked as it was taken
                labels = set(prediction.labels.tolist())
                if any(_text(label) not in self.class_index for label in labels):
                    bad.setdefault(index, "unknown_class")
        return bad

    def _apply(self, tally: _Tally) -> None:
        """Add a batch's tally to the counts (arrays of the same shapes: this cannot fail)."""
        self.rows += tally.rows
        if tally.features is not None:
            self.features += tally.features
        if tally.predictions is not None:
            self.predictions += tally.predictions
        if tally.scores is not None:
            self.scores += tally.scores
            self.score_sum += tally.score_sum
        if tally.rejected:
            self._reject(tally.rejected)

    def _reject(self, rows: dict[str, int], detail: str = "") -> None:
        """Count rows left out; the first time for each reason, say so in the log (only then:
        a flood of bad requests must not flood the log)."""
        for reason, count in rows.items():
            if not self.rejected[reason]:
                logger.warning(
                    "monitoring of model %s version %s leaves out a request: %s%s (counted in "
                    "%s{reason=%r}; only the first is logged)",
                    self.model,
                    self.version,
                    WHY[reason],
                    f" ({detail})" if detail else "",
                    names.total(names.MONITORING_REJECTED_ROWS),
                    reason,
                )
            self.rejected[reason] += count

    def refuse(self, rows: int, reason: str, nulls: Mapping[str, int]) -> None:
        """Count `rows` refused (422) for their values (`reason`, one of REFUSE_REASONS) and,
        for each feature, the missing values among them (`nulls`: feature -> count) in its null
        slot; nothing else of those rows is counted. Applied at once (a rare path: a handful of
        additions, no pass over values), so the next scrape sees it.

        Only for rows the server knew and refused for their values: a request refused for its
        structure (unknown inputs, shapes, a malformed body) is never passed here, its rows are
        unknown or meaningless. Never raises (a monitoring bug must not turn a 422 into a 500):
        arguments that make no sense (a bug) are logged, the first time, and nothing is counted.
        Features the baseline does not bin have no null slot and are passed over."""
        try:
            slots = self._refused_slots(rows, reason, nulls)
            if slots is None:
                return
            for slot, count in slots:
                self.features[slot] += count
            self.refused[reason] += rows
        except Exception:
            logger.exception("counting %r refused rows failed", rows)

    def _refused_slots(self, rows: Any, reason: Any, nulls: Any) -> list[tuple[int, int]] | None:
        """(slot, count) to add for a refusal, checked in full before anything is added; None
        (logged once) when the arguments make no sense."""
        problem = None
        slots: list[tuple[int, int]] = []
        if not _count(rows) or rows < 1:
            problem = f"rows {rows!r}"
        elif reason not in self.refused:
            problem = f"reason {reason!r}"
        elif not isinstance(nulls, Mapping):
            problem = f"nulls {type(nulls).__name__}"
        else:
            for name, count in nulls.items():
                if not _count(count) or not 0 <= count <= rows:
                    problem = f"{count!r} nulls of {name!r} in {rows} rows"
                    break
                slot = self._null_slots.get(name) if isinstance(name, str) else None
                if slot is not None and count:
                    slots.append((slot, int(count)))
        if problem is None:
            return slots
        if not self._garbage_logged:
            self._garbage_logged = True
            logger.warning("refused rows not counted: %s (a bug; only the first logged)", problem)
        return None

    def feedback(self, predicted: Sequence[Any], actual: Sequence[Any]) -> None:
        """Count true labels against the predictions they answer (classes or values).

        Unprocessable (422), with nothing counted, for feedback that cannot be counted: a
        regressor's error totals must stay finite, so every difference, absolute error, square
        and sum is checked in float64 before any of it is added."""
        if len(predicted) != len(actual) or not actual:
            raise Unprocessable("feedback needs as many predictions as labels, at least one")
        if self.classes:
            unknown = len(self.classes)
            for p, a in zip(predicted, actual, strict=True):
                row = self.class_index.get(str(p), unknown)
                column = self.class_index.get(str(a), unknown)
                self.confusion[row, column] += 1
            self.labels += len(actual)
            return
        absolute, squared = error_sums(predicted, actual)
        absolute_total = self.absolute_error + absolute
        squared_total = self.squared_error + squared
        if not (math.isfinite(absolute_total) and math.isfinite(squared_total)):
            raise Unprocessable(
                "counting this feedback would take the error totals beyond float64 (absolute "
                f"{self.absolute_error:.6g} + {absolute:.6g}, squared {self.squared_error:.6g} + "
                f"{squared:.6g}): not counted"
            )
        self.labels += len(actual)
        self.absolute_error = absolute_total
        self.squared_error = squared_total

    def settle(self) -> None:
        """Count whatever is pending (before a scrape); a monitoring bug never fails it."""
        try:
            self.flush()
        except Exception:  # a monitoring bug must not take /metrics down with it
            logger.exception("counting the pending requests failed")


def _joined(arrays: list[np.ndarray[Any, Any] | None]) -> np.ndarray[Any, Any]:
    present = [a for a in arrays if a is not None]
    return present[0] if len(present) == 1 else np.concatenate(present)


def _count(value: Any) -> bool:
    """An integer count (Python's or numpy's), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _rows(inputs: Inputs) -> int:
    return inputs.rows if isinstance(inputs.rows, int) and inputs.rows > 0 else 0


def _text(label: Any) -> str:
    return label if isinstance(label, str) else str(label)


def _row_max(probabilities: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The highest probability of each row. numpy reduces a short axis slowly: for a few
    classes, a running `maximum` over the columns is several times faster than `max(axis=1)`."""
    classes = probabilities.shape[1]
    if classes > 8:
        found: np.ndarray[Any, Any] = probabilities.max(axis=1)
        return found
    best = probabilities[:, 0].copy()
    for column in range(1, classes):
        np.maximum(best, probabilities[:, column], out=best)
    return best
