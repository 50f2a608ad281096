"""Synthetic customer-churn data with a fixed seed, in two eras.

Era 0 is what the first model learns. In era 1 prices went up and support got busier
(`monthly_charges` +25, `support_calls` doubled: a mean shift on two features), and customers
now tolerate higher charges (the churn boundary moved from 65 to 90): a model trained on era 0
is wrong on era 1, and one retrained on era 1 data is right again.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

FEATURES = ["tenure_months", "monthly_charges", "support_calls", "age", "plan", "region"]
LABEL = "churn"
SHIFTED = ["monthly_charges", "support_calls"]
PLANS = (["basic", "standard", "premium"], [0.5, 0.35, 0.15])
REGIONS = (["north", "south", "east", "west"], [0.4, 0.3, 0.2, 0.1])


def features(rows: int, era: int, rng: np.random.Generator) -> pd.DataFrame:
    """Model inputs of one era."""
    charges = rng.normal(65 + 25 * era, 18, rows).clip(10, 200)
    return pd.DataFrame(
        {
            "tenure_months": rng.gamma(2.0, 12.0, rows).clip(0, 72).round(0),
            "monthly_charges": charges.round(2),
            "support_calls": rng.poisson(1.5 * (1 + era), rows).astype(float),
            "age": rng.normal(45, 12, rows).clip(18, 90).round(0),
            "plan": rng.choice(PLANS[0], rows, p=PLANS[1]),
            "region": rng.choice(REGIONS[0], rows, p=REGIONS[1]),
        }
    )


def labels(frame: pd.DataFrame, era: int, rng: np.random.Generator) -> np.ndarray:
    """Churn (0/1) under the era's behaviour, with some noise."""
    boundary = 65 + 25 * era
    logit = (
        0.15 * (frame["monthly_charges"] - boundary)
        - 0.08 * (frame["tenure_months"] - 24)
        + 0.6 * (frame["support_calls"] - 1.5 * (1 + era))
        + frame["plan"].map({"basic": 0.5, "standard": 0.0, "premium": -0.8})
    )
    probability = 1 / (1 + np.exp(-logit.to_numpy()))
    churned: np.ndarray = (rng.random(len(frame)) < probability).astype(int)
    return churned


def dataset_csv(rows: int, era: int, seed: int) -> str:
    """A labelled dataset of one era as CSV text."""
    rng = np.random.default_rng(seed + 1000 * era)
    frame = features(rows, era, rng)
    frame[LABEL] = labels(frame, era, rng)
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue()


def request_body(rows: int, era: int, rng: np.random.Generator) -> dict[str, object]:
    """An OIP v2 request with rows of one era (one tensor per feature)."""
    frame = features(rows, era, rng)
    inputs = []
    for name in FEATURES:
        column = frame[name]
        numeric = pd.api.types.is_numeric_dtype(column)
        inputs.append(
            {
                "name": name,
                "shape": [rows],
                "datatype": "FP64" if numeric else "BYTES",
                "data": column.tolist(),
            }
        )
    return {"inputs": inputs}
