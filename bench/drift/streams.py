"""Synthetic drift streams: one reference (training) frame and windows with known shifts.

numpy only, so that every side (ours and the textbook test in .venv, each peer in its own
virtualenv) rebuilds the very same frames from a `StreamSpec` (PCG64 streams are stable across
numpy versions; the orchestrator also checks a digest of every window each worker saw).

20 features: 16 numeric (n00-n05 normal, n06-n10 lognormal, n11-n15 uniform) and 4 categorical
(c0-c3 with 5, 6, 8 and 10 categories of Zipf-like, unequal frequencies), plus the `prediction`
of a fixed linear classifier. A latent class (`yes` with probability 0.3 in the reference) moves
n04, n05 and n10 and is the label; the classifier predicts it from those three features. Numeric
values are rounded to float32, as a model server decodes them. Shift kinds (`SHIFTED`, `SIZES`;
docs/drift-benchmark.md has the table), each applied to a few features of a window drawn from
the same generator:

- `mean`:    n00, n07, n12 move by `size` population standard deviations;
- `scale`:   n01, n08, n13 spread around their mean by a factor `size`;
- `tail`:    n02, n06: values above the population's 95th percentile stretched `size` times
             further from it;
- `range`:   n03, n14: a share `size` of values replaced by values beyond the reference's range;
- `missing`: n09, n11: a share `size` of values missing (NaN);
- `freq`:    c0, c2: the least frequent category's share multiplied by `size`;
- `new`:     c1, c3 get a value the reference never had in a share `size` of rows;
- `prior`:   the latent class's share becomes `size` (label-prior shift): n04, n05, n10 and the
             prediction move together;
- `none`:    nothing moves (false alarms).
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
PREDICTION = "prediction"
COLUMNS = [*FEATURES, PREDICTION]
CLASSES = ["no", "yes"]
CATEGORY_COUNTS = (5, 6, 8, 10)
LATENT = {"n04": 1.0, "n05": -1.0, "n10": 0.8}
"""Features the latent class moves: by this many standard deviations (n10: of its logarithm)."""
PRIOR = 0.3
"""The latent class's share in the reference and in every window but `prior` ones."""
SHIFTED = {
    "mean": ("n00", "n07", "n12"),
    "scale": ("n01", "n08", "n13"),
    "tail": ("n02", "n06"),
    "range": ("n03", "n14"),
    "missing": ("n09", "n11"),
    "freq": ("c0", "c2"),
    "new": ("c1", "c3"),
    "prior": ("n04", "n05", "n10", PREDICTION),
    "none": (),
}
SIZES = {
    "mean": (0.1, 1 / 3),
    "scale": (1.1, 1.3),
    "tail": (2.0, 3.0),
    "range": (0.01, 0.05),
    "missing": (0.01, 0.05),
    "freq": (1.5, 2.0),
    "new": (0.01, 0.05),
    "prior": (0.36, 0.45),
    "none": (0.0,),
}
UNIVARIATE = [k for k in SIZES if k not in ("prior", "none")]
NEW_VALUE = "zz_new"
REFERENCE_ROWS, REFERENCE_SEED = 20_000, 20_260_101
HELD_OUT = 0.2
"""The reference's last fifth: the held-out rows whose predictions the product records."""
TAIL_QUANTILE = 1.6448536269514722  # the standard normal's 95th percentile
RULE_THRESHOLD = 1.85


def _numeric_params(i: int) -> tuple[str, float, float]:
    """(family, a, b) of feature n<i>: normal(a, b), lognormal(a, b) or uniform(a, b)."""
    if i < 6:
        return "normal", float(i) * 2.0 - 3.0, 0.5 + 0.5 * i
    if i < 11:
        return "lognormal", 0.2 * (i - 6), 0.3 + 0.15 * (i - 6)
    return "uniform", -float(i - 11), 1.0 + 2.0 * (i - 11)


def moments(name: str) -> tuple[float, float]:
    """The population mean and standard deviation of a numeric feature (latent class 'no')."""
    family, a, b = _numeric_params(NUMERIC.index(name))
    if family == "normal":
        return a, b
    if family == "lognormal":
        mean = math.exp(a + b * b / 2)
        return mean, mean * math.sqrt(math.exp(b * b) - 1)
    return (a + b) / 2, (b - a) / math.sqrt(12)


def _upper(name: str, z: float) -> float:
    """The population quantile at standard normal score `z` (uniform: at Φ(z) of its span)."""
    family, a, b = _numeric_params(NUMERIC.index(name))
    if family == "normal":
        return a + b * z
    if family == "lognormal":
        return math.exp(a + b * z)
    return a + (b - a) * 0.5 * (1 + math.erf(z / math.sqrt(2)))


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
        """The columns this window moves."""
        return SHIFTED.get(self.kind, ())


@dataclass(frozen=True)
class Frame:
    """Columns of one window: numeric as a float64 matrix (rows x 16, NaN for missing),
    categoricals and the predicted class as str arrays."""

    numeric: Array
    categorical: dict[str, Array]
    prediction: Array


def reference() -> StreamSpec:
    """The training frame's spec."""
    return StreamSpec("ref", 0.0, REFERENCE_ROWS, REFERENCE_SEED)


def _draw(rng: np.random.Generator, name: str, n: int, latent: Array) -> Array:
    family, a, b = _numeric_params(NUMERIC.index(name))
    move = LATENT.get(name, 0.0) * latent
    if family == "normal":
        return rng.normal(a, b, n) + move * b
    if family == "lognormal":
        return rng.lognormal(a, b, n) * np.exp(move * b)
    return rng.uniform(a, b, n)


def _shift(rng: np.random.Generator, spec: StreamSpec, name: str, column: Array) -> Array:
    """One numeric column with the window's shift applied (if it moves this column)."""
    if name not in spec.shifted or name in LATENT:
        return column
    mean, std = moments(name)
    if spec.kind == "mean":
        return column + spec.size * std
    if spec.kind == "scale":
        return mean + (column - mean) * spec.size
    if spec.kind == "tail":
        start = _upper(name, TAIL_QUANTILE)
        return np.where(column > start, start + (column - start) * spec.size, column)
    chosen = rng.random(column.size) < spec.size
    if spec.kind == "missing":
        return np.where(chosen, np.nan, column)
    # range: beyond anything 20,000 reference rows hold (normal: 4.5-6 SD, uniform: its end
    # plus up to half its span).
    family, a, b = _numeric_params(NUMERIC.index(name))
    low = _upper(name, 4.5) if family != "uniform" else b
    span = 1.5 * std if family != "uniform" else 0.5 * (b - a)
    return np.where(chosen, low + span * rng.random(column.size), column)


def _categorical(rng: np.random.Generator, spec: StreamSpec, name: str, n: int) -> Array:
    values, p = categories(name)
    if spec.kind == "freq" and name in spec.shifted:
        rest = 1.0 - p[-1]
        last = p[-1] * spec.size
        p = np.append(p[:-1] * (1.0 - last) / rest, last)
    column = np.asarray(values)[rng.choice(len(values), n, p=p)]
    if spec.kind == "new" and name in spec.shifted:
        column[rng.random(n) < spec.size] = NEW_VALUE
    return column.astype(f"<U{len(NEW_VALUE) + 4}")


def predict(numeric: Array) -> Array:
    """The fixed linear classifier: `yes` when the standardised n04 - n05 + n10 / 2 (at the
    latent class `no`) exceeds 1.85 (elementwise float64 only, so every side agrees)."""
    score = np.zeros(numeric.shape[0])
    for name, weight in (("n04", 1.0), ("n05", -1.0), ("n10", 0.5)):
        mean, std = moments(name)
        score = score + weight * (numeric[:, NUMERIC.index(name)] - mean) / std
    return np.asarray(CLASSES)[(score > RULE_THRESHOLD).astype(np.int64)]


def generate(spec: StreamSpec) -> Frame:
    """Draw the window of `spec`, shift applied."""
    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    prior = spec.size if spec.kind == "prior" else PRIOR
    latent = (rng.random(n) < prior).astype(np.float64)
    numeric = np.empty((n, len(NUMERIC)))
    for i, name in enumerate(NUMERIC):
        numeric[:, i] = _draw(rng, name, n, latent)
    for i, name in enumerate(NUMERIC):
        numeric[:, i] = _shift(rng, spec, name, numeric[:, i])
    numeric = numeric.astype(np.float32).astype(np.float64)
    categorical = {name: _categorical(rng, spec, name, n) for name in CATEGORICAL}
    return Frame(numeric, categorical, predict(numeric))


def latent_label(spec: StreamSpec) -> Array:
    """The latent class of each row of `spec` (the label), drawn first by `generate`."""
    rng = np.random.default_rng(spec.seed)
    prior = spec.size if spec.kind == "prior" else PRIOR
    return np.asarray(CLASSES)[(rng.random(spec.rows) < prior).astype(np.int64)]


def digest(frame: Frame) -> str:
    """A short hash of a window's values, to check every side saw the same data."""
    h = hashlib.sha256(np.ascontiguousarray(frame.numeric).tobytes())
    for name in CATEGORICAL:
        h.update(frame.categorical[name].tobytes())
    h.update(frame.prediction.astype("<U4").tobytes())
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
    text = f"{kind}:{size:.6g}:{rows}:{rep}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little")


def label(kind: str, size: float) -> str:
    """A shift cell's name in tables: `mean 0.33`, `freq x2`, `new 1%`."""
    if kind == "none":
        return "none"
    if kind in ("scale", "tail", "freq"):
        return f"{kind} x{size:g}"
    if kind in ("range", "missing", "new"):
        return f"{kind} {100 * size:g}%"
    if kind == "prior":
        return f"prior {PRIOR:g}->{size:g}"
    return f"{kind} {size:.2g} SD"
