"""The story's objects: what a user would `kubectl apply` (examples/quickstart, on the demo's
churn data instead of iris)."""

from __future__ import annotations

from typing import Any

from demo.data import LABEL

Obj = dict[str, Any]
API = "flywheel.dev/v1alpha1"
ESTIMATOR = {
    "class": "sklearn.ensemble.RandomForestClassifier",
    "params": {"n_estimators": 40, "max_depth": 8},
}
TRAINING = {
    "model": "churn",
    "datasetRef": {"name": "customers"},
    "estimator": ESTIMATOR,
    "split": {"testFraction": 0.25, "seed": 7},
    "metrics": ["accuracy", "f1_macro"],
}


def dataset(url: str) -> Obj:
    """The customers Dataset, read over HTTP."""
    return {
        "apiVersion": API,
        "kind": "Dataset",
        "metadata": {"name": "customers"},
        "spec": {
            "source": {"uri": url},
            "schema": {"label": LABEL},
            "validation": {"minRows": 500, "maxNullFraction": 0.0},
            "statistics": {"bins": 10},
        },
    }


def training_run() -> Obj:
    """The first TrainingRun (the champion to be)."""
    spec = {**TRAINING, "validation": {"thresholds": [{"metric": "accuracy", "min": 0.75}]}}
    return {"apiVersion": API, "kind": "TrainingRun", "metadata": {"name": "churn-1"}, "spec": spec}


def model_deployment() -> Obj:
    """Serve the newest validated version; each new one rolls out by itself."""
    return {
        "apiVersion": API,
        "kind": "ModelDeployment",
        "metadata": {"name": "churn"},
        "spec": {
            "model": "churn",
            "policy": "LatestValidated",
            "replicas": 2,
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        },
    }


def model_monitor(interval: str = "5s", window: str = "20s") -> Obj:
    """Drift on the inputs; in Auto mode a retraining on new data, once per episode."""
    validation = {
        "thresholds": [{"metric": "accuracy", "min": 0.75}],
        "compareTo": {"deploymentRef": {"name": "churn"}, "metric": "accuracy"},
    }
    return {
        "apiVersion": API,
        "kind": "ModelMonitor",
        "metadata": {"name": "churn"},
        "spec": {
            "deploymentRef": {"name": "churn"},
            "interval": interval,
            "window": window,
            "minSamples": 300,
            "dataDrift": {"method": "psi", "decision": "Calibrated", "minDriftedFeatures": 1},
            "consecutiveEvaluations": 2,
            "cooldown": "10m",
            "mode": "Auto",
            "retrain": {
                "maxRunsPerDay": 3,
                "requireNewData": True,
                "template": {**TRAINING, "validation": validation},
            },
        },
    }
