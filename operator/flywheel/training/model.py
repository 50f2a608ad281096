"""Build the scikit-learn pipeline a TrainingRun describes: typed preprocessing + the estimator.

Features are prepared by type - categoricals one-hot encoded with unknown categories ignored,
numerics passed through or standardised - then the allow-listed estimator (or custom steps) runs.
Classes are imported from the allow-list only, never from an arbitrary path.
"""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from flywheel.api.estimators import ESTIMATORS, TRANSFORMERS
from flywheel.api.trainingrun import Estimator, Preprocessing
from flywheel.interfaces.jobs import FailureReason


class InvalidEstimator(Exception):
    """The estimator cannot be built: not allow-listed, or its parameters are refused."""

    reason = FailureReason.INVALID_ESTIMATOR


def load_class(path: str) -> type[BaseEstimator]:
    """An allow-listed scikit-learn class by import path."""
    if path not in ESTIMATORS | TRANSFORMERS:
        raise InvalidEstimator(f"{path} is not an allow-listed estimator")
    module, _, name = path.rpartition(".")
    cls: type[BaseEstimator] = getattr(importlib.import_module(module), name)
    return cls


def instantiate(path: str, params: dict[str, Any], seed: int) -> BaseEstimator:
    """An estimator with its parameters; `random_state` defaults to the run's seed."""
    cls = load_class(path)
    accepted = cls().get_params()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidEstimator(f"{path} has no parameter {', '.join(unknown)}")
    arguments = dict(params)
    if "random_state" in accepted and "random_state" not in arguments:
        arguments["random_state"] = seed
    try:
        return cls(**arguments)
    except (TypeError, ValueError) as error:
        raise InvalidEstimator(f"{path}({arguments}): {error}") from error


def build_pipeline(
    estimator: Estimator,
    preprocessing: Preprocessing,
    *,
    numeric: list[str],
    categorical: list[str],
    seed: int,
) -> Pipeline:
    """The full model: column preprocessing, then the steps or the single estimator."""
    numeric_step: Any = StandardScaler() if preprocessing.scale_numeric else "passthrough"
    columns = ColumnTransformer(
        [
            *([("numeric", numeric_step, numeric)] if numeric else []),
            *(
                [
                    (
                        "categorical",
                        OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                        categorical,
                    )
                ]
                if categorical
                else []
            ),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    if estimator.steps:
        steps = [
            (f"step{i}", instantiate(s.class_, dict(s.params), seed))
            for i, s in enumerate(estimator.steps)
        ]
    else:
        assert estimator.class_ is not None
        steps = [("model", instantiate(estimator.class_, dict(estimator.params), seed))]
    return Pipeline([("columns", columns), *steps])
