"""Window counts: how much each monitoring counter of a model version grew over a window.

Two sources give the same :class:`WindowCounts` for the same traffic:

- **Pods.** The operator scrapes every ready serving pod (:func:`parse_scrape`) at each
  evaluation, and a :class:`PodWindow` keeps one snapshot per pod. The increase between two
  scrapes of a pod is `now - before`, or `now` alone when the counter went down (the process
  restarted and counts from zero again, as Prometheus treats counter resets). A pod seen for the
  first time counts from zero when it started after the previous scrape (all its traffic is new),
  else it only sets its baseline; a pod that is gone counts nothing more (the few requests it
  answered after its last scrape are lost, as they are for a Prometheus that scraped it then).
  The window is the sum of the increases of the scrapes inside it, so its span is a whole number
  of intervals.
- **Prometheus.** `increase(...[window])` per series, summed over pods by the labels that make
  a slot (:func:`promql`, :func:`from_vectors`). Prometheus extrapolates to the window's edges,
  which scales every slot of a scrape alike: proportions, hence drift scores, are the same.

Series are filtered on the `model` and `version` labels, so a rollout's two versions never mix.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from flywheel_serving import names
from flywheel_serving.names import SLOT_LABELS, total

FEATURES = total(names.FEATURE_VALUES)
PREDICTIONS = total(names.PREDICTIONS)
PREDICTION_VALUES = total(names.PREDICTION_VALUES)
ROWS = total(names.MONITORED_ROWS)
LABELS = total(names.FEEDBACK_LABELS)
CONFUSION = total(names.FEEDBACK_CONFUSION)
ABSOLUTE_ERROR = total(names.FEEDBACK_ABSOLUTE_ERROR)

SeriesKey = tuple[str, tuple[str, ...]]
Counters = dict[SeriesKey, float]


@dataclass(frozen=True)
class WindowCounts:
    """The increase of every monitoring counter over one window."""

    rows: float = 0.0
    features: dict[str, dict[str, float]] = field(default_factory=dict)
    """feature -> bin -> values counted."""
    predictions: dict[str, float] = field(default_factory=dict)
    """class (classifiers) or bin (regressors) -> predictions."""
    labels: float = 0.0
    correct: float = 0.0
    absolute_error: float = 0.0

    @classmethod
    def from_counters(cls, counters: Mapping[SeriesKey, float]) -> WindowCounts:
        """Group raw series increases into the counts the statistics need."""
        features: dict[str, dict[str, float]] = defaultdict(dict)
        predictions: dict[str, float] = {}
        totals = {ROWS: 0.0, LABELS: 0.0, ABSOLUTE_ERROR: 0.0}
        correct = 0.0
        for (metric, values), amount in counters.items():
            if metric == FEATURES:
                features[values[0]][values[1]] = amount
            elif metric in (PREDICTIONS, PREDICTION_VALUES):
                predictions[values[0]] = amount
            elif metric == CONFUSION:
                correct += amount if values[0] == values[1] else 0.0
            elif metric in totals:
                totals[metric] += amount
        return cls(
            rows=totals[ROWS],
            features=dict(features),
            predictions=predictions,
            labels=totals[LABELS],
            correct=correct,
            absolute_error=totals[ABSOLUTE_ERROR],
        )


def parse_scrape(text: str, model: str, version: str) -> Counters:
    """The monitoring counters of one model version in a pod's `/metrics` text."""
    found: Counters = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            slots = SLOT_LABELS.get(sample.name)
            if slots is None:
                continue
            labels = sample.labels
            if labels.get(names.MODEL) != model or labels.get(names.VERSION) != version:
                continue
            found[(sample.name, tuple(labels.get(s, "") for s in slots))] = float(sample.value)
    return found


def increase(before: Mapping[SeriesKey, float], now: Mapping[SeriesKey, float]) -> Counters:
    """Per series, how much it grew; a counter that went down was reset and counts from 0."""
    grown: Counters = {}
    for key, value in now.items():
        old = before.get(key, 0.0)
        delta = value - old if value >= old else value
        if delta:
            grown[key] = delta
    return grown


@dataclass(frozen=True)
class PodScrape:
    """One pod's counters and when its container started (None: unknown)."""

    counters: Counters
    started: datetime | None


@dataclass
class PodWindow:
    """Per-pod snapshots and the increases between them, for the `Pods` source."""

    keep: timedelta
    """How far back increases are kept: the longest window asked for."""
    since: datetime | None = None
    """The first scrape: the window cannot reach further back (after an operator start)."""
    last_time: datetime | None = None
    last: dict[str, Counters] = field(default_factory=dict)
    increments: deque[tuple[datetime, Counters]] = field(default_factory=deque)

    def observe(self, now: datetime, pods: Mapping[str, PodScrape]) -> None:
        """Record one scrape of every ready pod (keyed by pod UID)."""
        grown: Counters = defaultdict(float)
        for uid, scrape in pods.items():
            before = self.last.get(uid)
            if before is None:
                fresh = (
                    self.last_time is not None
                    and scrape.started is not None
                    and scrape.started >= self.last_time
                )
                if not fresh:
                    continue  # first sight of a pod that ran before: its baseline only
                before = {}
            for key, delta in increase(before, scrape.counters).items():
                grown[key] += delta
        if self.last_time is not None:
            self.increments.append((now, dict(grown)))
        else:
            self.since = now
        self.last_time = now
        self.last = {uid: scrape.counters for uid, scrape in pods.items()}
        while self.increments and self.increments[0][0] <= now - self.keep:
            self.increments.popleft()

    def covered(self, now: datetime, span: timedelta) -> timedelta:
        """How much of the window the snapshots cover (less than `span` after a start)."""
        return timedelta(0) if self.since is None else min(span, now - self.since)

    def window(self, now: datetime, span: timedelta) -> WindowCounts:
        """The counts of the scrapes in (now - span, now]."""
        total: Counters = defaultdict(float)
        for time, grown in self.increments:
            if time > now - span:
                for key, delta in grown.items():
                    total[key] += delta
        return WindowCounts.from_counters(total)


def promql(metric: str, model: str, version: str, window_seconds: int, extra: str = "") -> str:
    """The query of one counter's increase over the window, summed over pods per slot."""
    selector = f"{names.MODEL}={json.dumps(model)},{names.VERSION}={json.dumps(version)}"
    selector += f",{extra}" if extra else ""
    by = ", ".join(SLOT_LABELS[metric])
    return f"sum by ({by}) (increase({metric}{{{selector}}}[{window_seconds}s]))"


def from_vectors(results: Iterable[tuple[str, list[tuple[dict[str, str], float]]]]) -> Counters:
    """Counters from instant-vector answers: (metric, [(labels, value)]) per query."""
    found: Counters = {}
    for metric, samples in results:
        slots = SLOT_LABELS[metric]
        for labels, value in samples:
            found[(metric, tuple(labels.get(s, "") for s in slots))] = value
    return found
