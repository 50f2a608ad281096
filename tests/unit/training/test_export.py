"""ONNX export with parity for the estimators users train most, and a broken export caught."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.datasets import load_diabetes, load_iris
from sklearn.model_selection import train_test_split

from flywheel.api.trainingrun import Estimator, Preprocessing
from flywheel.training.export import ParityFailed, check_parity, export
from flywheel.training.model import InvalidEstimator, build_pipeline, instantiate


def _iris() -> tuple[pd.DataFrame, pd.Series, list[str]]:
    frame = load_iris(as_frame=True).frame
    return (
        frame.drop(columns="target"),
        frame["target"],
        [c for c in frame.columns if c != "target"],
    )


def _categorical() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(3)
    n = 600
    city = rng.choice(["paris", "lyon", "nice", "lille"], n)
    income = rng.normal(50, 10, n)
    label = ((city == "paris") | (income > 55)).astype(int)
    return pd.DataFrame({"income": income, "city": city}), pd.Series(label)


def _fit_and_check(
    estimator: dict[str, Any],
    x: pd.DataFrame,
    y: pd.Series,
    numeric: list[str],
    categorical: list[str],
    *,
    classifier: bool,
    scale: bool = False,
) -> float:
    train_x, test_x, train_y, _ = train_test_split(x, y, test_size=0.25, random_state=0)
    pipeline = build_pipeline(
        Estimator.model_validate(estimator),
        Preprocessing(scale_numeric=scale),
        numeric=numeric,
        categorical=categorical,
        seed=0,
    )
    pipeline.fit(train_x, train_y)
    model = export(pipeline, numeric, categorical, classifier=classifier)
    onnx.checker.check_model(onnx.load_from_string(model))
    return check_parity(
        model, pipeline, test_x, numeric, categorical, classifier=classifier
    ).max_deviation


@pytest.mark.parametrize(
    "estimator",
    [
        {
            "class": "sklearn.ensemble.RandomForestClassifier",
            "params": {"n_estimators": 30, "max_depth": 5},
        },
        {"class": "sklearn.ensemble.GradientBoostingClassifier", "params": {"n_estimators": 20}},
        {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
        {
            "steps": [
                {"class": "sklearn.preprocessing.StandardScaler"},
                {"class": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
            ]
        },
    ],
    ids=["random-forest", "gradient-boosting", "logistic-regression", "scaler-pipeline"],
)
def test_classifiers_export_faithfully(estimator: dict[str, Any]) -> None:
    x, y, numeric = _iris()
    assert _fit_and_check(estimator, x, y, numeric, [], classifier=True) < 1e-4


def test_categoricals_are_one_hot_encoded_and_unknowns_ignored() -> None:
    x, y = _categorical()
    estimator = {"class": "sklearn.linear_model.LogisticRegression"}
    assert _fit_and_check(estimator, x, y, ["income"], ["city"], classifier=True, scale=True) < 1e-4
    pipeline = build_pipeline(
        Estimator.model_validate(estimator),
        Preprocessing(),
        numeric=["income"],
        categorical=["city"],
        seed=0,
    ).fit(x, y)
    unseen = pd.DataFrame({"income": [50.0], "city": ["marseille"]})
    model = export(pipeline, ["income"], ["city"], classifier=True)
    check_parity(model, pipeline, unseen, ["income"], ["city"], classifier=True)


def test_a_regressor_exports_faithfully() -> None:
    frame = load_diabetes(as_frame=True).frame
    numeric = [c for c in frame.columns if c != "target"]
    estimator = {
        "class": "sklearn.ensemble.GradientBoostingRegressor",
        "params": {"n_estimators": 30},
    }
    assert (
        _fit_and_check(estimator, frame[numeric], frame["target"], numeric, [], classifier=False)
        < 1e-4
    )


def test_a_broken_export_fails_the_parity_check() -> None:
    x, y, numeric = _iris()
    estimator = Estimator.model_validate(
        {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}}
    )
    good = build_pipeline(estimator, Preprocessing(), numeric=numeric, categorical=[], seed=0).fit(
        x, y
    )
    other = build_pipeline(estimator, Preprocessing(), numeric=numeric, categorical=[], seed=1).fit(
        x, y.sample(frac=1, random_state=2).to_numpy()
    )
    wrong = export(other, numeric, [], classifier=True)  # an artifact that is not this model
    with pytest.raises(ParityFailed, match="worst deviation"):
        check_parity(wrong, good, x, numeric, [], classifier=True)


def test_parameters_are_checked_against_the_class() -> None:
    with pytest.raises(InvalidEstimator, match="has no parameter n_trees"):
        instantiate("sklearn.ensemble.RandomForestClassifier", {"n_trees": 3}, seed=0)
    with pytest.raises(InvalidEstimator, match="not an allow-listed"):
        instantiate("sklearn.cluster.KMeans", {}, seed=0)
    model = instantiate("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 3}, seed=7)
    assert model.get_params()["random_state"] == 7
