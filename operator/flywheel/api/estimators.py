"""The scikit-learn estimators a TrainingRun may name, and the metrics it may ask for.

The allow-list is static data so that the API layer can refuse an unknown import path without
importing scikit-learn: a TrainingRun never makes the training Job import arbitrary code. Every
entry here must be convertible to ONNX by skl2onnx; the training Job checks parity after export.
"""

from __future__ import annotations

from typing import Literal

CLASSIFIERS = frozenset(
    {
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.ExtraTreesClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.linear_model.LogisticRegression",
        "sklearn.linear_model.RidgeClassifier",
        "sklearn.linear_model.SGDClassifier",
        "sklearn.naive_bayes.GaussianNB",
        "sklearn.neighbors.KNeighborsClassifier",
        "sklearn.svm.LinearSVC",
        "sklearn.svm.SVC",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.neural_network.MLPClassifier",
    }
)
"""Estimators for `task: classification`."""

REGRESSORS = frozenset(
    {
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.ensemble.ExtraTreesRegressor",
        "sklearn.ensemble.GradientBoostingRegressor",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.linear_model.LinearRegression",
        "sklearn.linear_model.Ridge",
        "sklearn.linear_model.Lasso",
        "sklearn.linear_model.ElasticNet",
        "sklearn.linear_model.SGDRegressor",
        "sklearn.neighbors.KNeighborsRegressor",
        "sklearn.svm.LinearSVR",
        "sklearn.svm.SVR",
        "sklearn.tree.DecisionTreeRegressor",
        "sklearn.neural_network.MLPRegressor",
    }
)
"""Estimators for `task: regression`."""

TRANSFORMERS = frozenset(
    {
        "sklearn.preprocessing.StandardScaler",
        "sklearn.preprocessing.MinMaxScaler",
        "sklearn.preprocessing.RobustScaler",
        "sklearn.preprocessing.MaxAbsScaler",
        "sklearn.preprocessing.Normalizer",
        "sklearn.preprocessing.PolynomialFeatures",
        "sklearn.impute.SimpleImputer",
        "sklearn.decomposition.PCA",
        "sklearn.decomposition.TruncatedSVD",
        "sklearn.feature_selection.VarianceThreshold",
    }
)
"""Steps that may come before the final estimator of a pipeline."""

ESTIMATORS = CLASSIFIERS | REGRESSORS

ClassificationMetric = Literal[
    "accuracy",
    "balanced_accuracy",
    "f1_macro",
    "f1_weighted",
    "precision_macro",
    "recall_macro",
    "roc_auc",
    "log_loss",
]
RegressionMetric = Literal["mae", "rmse", "r2"]
MetricName = Literal[ClassificationMetric, RegressionMetric]

LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
"""Metrics where a smaller value is better; the champion comparison is direction aware."""


def better(metric: str, new: float, old: float) -> float:
    """How much better `new` is than `old` (positive is better), direction aware."""
    return old - new if metric in LOWER_IS_BETTER else new - old


def task_of(estimator_class: str) -> Literal["classification", "regression"] | None:
    """The task an allow-listed estimator performs, or None for an unknown class."""
    if estimator_class in CLASSIFIERS:
        return "classification"
    if estimator_class in REGRESSORS:
        return "regression"
    return None
