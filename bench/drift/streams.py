"""Synthetic drift streams: one reference (training) frame and windows with known shifts.

numpy only, so that every side (ours in .venv, each peer in its own virtualenv) rebuilds the very
same frames from a `StreamSpec` (PCG64 streams are stable across numpy versions; the orchestrator
also checks a digest of every window each worker saw, see `digest`).

20 features: 16 numeric (n00-n05 normal, n06-n10 lognormal, n11-n15 uniform) and 4 categorical
(c0-c3 with 5, 6, 8 and 10 categories of Zipf-like, unequal frequencies). Numeric values are
rounded to float32, as a model server decodes them. Shift kinds, each applied to a few features
of a window drawn from the same generator:

- `mean`:  n00, n07, n12 move by `size` population standard deviations;
- `scale`: n01, n08, n13 spread around their mean by a factor `size`;
- `freq`:  c0 and c2 move `size` of probability mass from the most to the least frequent category;
- `new`:   c1 and c3 get a value the reference never had in a share `size` of rows;
- `none`:  nothing moves (false alarms).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
NUMERIC = [f"n{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
FEATURES = NUMERIC + CATEGORICAL
CATEGORY_COUNTS = (5, 6, 8, 10)
SHIFTED = {
    "mean": ("n00", "n07", "n12"),
    "scale": ("n01", "n08", "n13"),
    "freq": ("c0", "c2"),
    "new": ("c1", "c3"),
    "none": (),
}
SIZES = {
    "mean": (0.1, 0.25, 0.5, 1.0),
    "scale": (1.25, 1.5, 2.0),
    "freq": (0.05, 0.1, 0.2),
    "new": (0.01, 0.05, 0.1),
    "none": (0.0,),
}
NEW_VALUE = "zz_new"
REFERENCE_ROWS, REFERENCE_SEED = 20_000, 20_260_101


def _numeric_params(i: int) -> tuple[str, float, float]:
    """(family, a, b) of feature n<i>: normal(a, b), lognormal(a, b) or uniform(a, b)."""
    if i < 6:
        return "normal", float(i) * 2.0 - 3.0, 0.5 + 0.5 * i
    if i < 11:
        return "lognormal", 0.2 * (i - 6), 0.3 + 0.15 * (i - 6)
    return "uniform", -float(i - 11), 1.0 + 2.0 * (i - 11)


def moments(name: str) -> tuple[float, float]:
    """The population mean and standard deviation of a numeric feature."""
    family, a, b = _numeric_params(NUMERIC.index(name))
    if family == "normal":
        return a, b
    if family == "lognormal":
        mean = math.exp(a + b * b / 2)
        return mean, mean * math.sqrt(math.exp(b * b) - 1)
    return (a + b) / 2, (b - a) / math.sqrt(12)


def categories(name: str) -> tuple[list[str], Array]:
    """A categorical feature's values and their reference probabilities (Zipf, exponent 1.2)."""
    k = CATEGORY_COUNTS[CATEGORICAL.index(name)]
    weights = 1.0 / np.arange(1, k + 1) ** 1.2
    return [f"{name}_v{j}" for j in range(k)], weights / weights.sum()


@dataclass(frozen=True)
class StreamSpec:
    """One window: its shift kind and size, its rows and its seed (the reference: kind `ref`)."""

    kind: str
    size: float
    rows: int
    seed: int

    @property
    def shifted(self) -> tuple[str, ...]:
        """The features this window moves."""
        return SHIFTED.get(self.kind, ())


@dataclass(frozen=True)
class Frame:
    """Columns of one window: numeric as a float64 matrix (rows x 16), categoricals as str."""

    numeric: Array
    categorical: dict[str, Array]


def reference() -> StreamSpec:
    """The training frame's spec."""
    return StreamSpec("ref", 0.0, REFERENCE_ROWS, REFERENCE_SEED)


def generate(spec: StreamSpec) -> Frame:
    """Draw the window of `spec`, shift applied."""
    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    numeric = np.empty((n, len(NUMERIC)))
    for i, name in enumerate(NUMERIC):
        family, a, b = _numeric_params(i)
        if family == "normal":
            column = rng.normal(a, b, n)
        elif family == "lognormal":
            column = rng.lognormal(a, b, n)
        else:
            column = rng.uniform(a, b, n)
        mean, std = moments(name)
        if spec.kind == "mean" and name in spec.shifted:
            column = column + spec.size * std
        elif spec.kind == "scale" and name in spec.shifted:
            column = mean + (column - mean) * spec.size
        numeric[:, i] = column
    numeric = numeric.astype(np.float32).astype(np.float64)
    categorical: dict[str, Array] = {}
    for name in CATEGORICAL:
        values, p = categories(name)
        if spec.kind == "freq" and name in spec.shifted:
            p = p.copy()
            moved = min(spec.size, p[0])
            p[0] -= moved
            p[-1] += moved
        column = np.asarray(values)[rng.choice(len(values), n, p=p)]
        if spec.kind == "new" and name in spec.shifted:
            column[rng.random(n) < spec.size] = NEW_VALUE
        categorical[name] = column.astype(f"<U{len(NEW_VALUE) + 4}")
    return Frame(numeric, categorical)


def digest(frame: Frame) -> str:
    """A short hash of a window's values, to check every side saw the same data."""
    h = hashlib.sha256(np.ascontiguousarray(frame.numeric).tobytes())
    for name in CATEGORICAL:
        h.update(frame.categorical[name].tobytes())
    return h.hexdigest()[:16]


def plan(windows: list[int], reps: dict[int, int], none_reps: dict[int, int]) -> list[StreamSpec]:
    """Every (kind, size, window rows) cell, `reps` windows each (`none_reps` for no shift),
    each window with its own seed."""
    specs = []
    for rows in windows:
        for kind, sizes in SIZES.items():
            for size in sizes:
                count = none_reps[rows] if kind == "none" else reps[rows]
                for rep in range(count):
                    seed = hash_seed(kind, size, rows, rep)
                    specs.append(StreamSpec(kind, size, rows, seed))
    return specs


def hash_seed(kind: str, size: float, rows: int, rep: int) -> int:
    """A fixed seed per window (independent of Python's string hash randomisation)."""
    text = f"{kind}:{size}:{rows}:{rep}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")
