"""The textbook test: what a statistician would run by hand on the raw values (scipy, in .venv).

Per column, at alpha = 0.05 split evenly over the 21 columns (Bonferroni):

- numeric: the two-sample Kolmogorov-Smirnov test (`scipy.stats.ks_2samp`, defaults) on the
  window's and the reference's values, NaN dropped on both sides. Dropping NaN means a rising
  share of missing values is invisible to it unless the values left move too (a null-share test
  is not part of the textbook recipe and is not added);
- categorical (the 4 categorical features and the predicted class): Pearson's chi-square test of
  homogeneity on the 2 x k table of category counts (`scipy.stats.chi2_contingency`, without
  Yates' correction), categories that neither side has left out.

The reference is the whole 20,000-row reference frame for every column, the prediction's too
(the classifier's predictions on it), as a user of scipy would pass it.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from drift.streams import CATEGORICAL, COLUMNS, NUMERIC, PREDICTION, Frame

Array = np.ndarray[Any, Any]
ALPHA = 0.05


@dataclass
class Textbook:
    """The reference's sorted numeric columns and category counts."""

    numeric: list[Array]
    categorical: dict[str, Counter[str]]

    @classmethod
    def fit(cls, frame: Frame) -> Textbook:
        """Keep what the tests need of the reference."""
        numeric = [np.sort(c[~np.isnan(c)]) for c in frame.numeric.T]
        return cls(numeric, _category_counts(frame))

    def p_values(self, frame: Frame) -> dict[str, float]:
        """Each column's p-value."""
        found: dict[str, float] = {}
        for i, name in enumerate(NUMERIC):
            column = frame.numeric[:, i]
            found[name] = float(stats.ks_2samp(column[~np.isnan(column)], self.numeric[i]).pvalue)
        for name, counts in _category_counts(frame).items():
            found[name] = _chi_square(self.categorical[name], counts)
        return found

    def flagged(self, frame: Frame) -> dict[str, str]:
        """The columns whose p-value is below alpha / 21, with the test that fired."""
        limit = ALPHA / len(COLUMNS)
        return {
            n: "KS" if n in NUMERIC else "chi2"
            for n, p in self.p_values(frame).items()
            if p < limit
        }

    def time_decision(self, frame: Frame, loops: int) -> float:
        """Median seconds to test all 21 columns of a raw window."""
        timings = []
        for _ in range(loops):
            started = time.perf_counter_ns()
            self.flagged(frame)
            timings.append(time.perf_counter_ns() - started)
        return float(np.median(timings)) / 1e9


def _category_counts(frame: Frame) -> dict[str, Counter[str]]:
    found = {name: Counter(frame.categorical[name].tolist()) for name in CATEGORICAL}
    found[PREDICTION] = Counter(frame.prediction.tolist())
    return found


def _chi_square(reference: Counter[str], window: Counter[str]) -> float:
    values = sorted(set(reference) | set(window))
    table = np.array([[reference[v] for v in values], [window[v] for v in values]])
    if len(values) < 2:
        return 1.0
    return float(stats.chi2_contingency(table, correction=False).pvalue)
