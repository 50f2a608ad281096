"""Monitoring metrics scraped over HTTP: baseline bins, predictions, feedback, cardinality."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from tests.serving.conftest import Artifacts, ServerFactory


def _scrape(http: httpx.Client) -> list[tuple[str, dict[str, str], float]]:
    answer = http.get("/metrics")
    assert answer.status_code == 200
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    ]


def _values(
    samples: list[tuple[str, dict[str, str], float]], name: str, key: str
) -> dict[str, float]:
    return {labels[key]: value for n, labels, value in samples if n == name}


def _feature_bins(
    samples: list[tuple[str, dict[str, str], float]], feature: str
) -> dict[str, float]:
    return {
        labels["bin"]: value
        for name, labels, value in samples
        if name == "flywheel_feature_values_total" and labels["feature"] == feature
    }


def _reference_bins(values: np.ndarray[Any, Any], edges: list[float]) -> list[int]:
    """[underflow, bin 1..B, overflow], numpy's own histogram for the inside."""
    inside = values[(values >= edges[0]) & (values <= edges[-1])]
    counts, _ = np.histogram(inside, bins=np.asarray(edges))
    return [int((values < edges[0]).sum()), *counts.tolist(), int((values > edges[-1]).sum())]


def test_bin_counters_equal_a_numpy_histogram_on_the_baseline_edges(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    stats = {f["name"]: f for f in iris.stats["features"]}
    names = [f["name"] for f in iris.features]
    rng = np.random.default_rng(1)
    batches = []
    for size in (1, 7, 100, 250):
        rows = rng.normal(loc=[5.8, 3.0, 3.8, 1.2], scale=[1.5, 0.8, 2.5, 1.0], size=(size, 4))
        batches.append(np.round(rows, 1))
    # Values exactly on edges, including the last edge (which belongs to the last bin).
    edge_row = [[stats[n]["histogram"]["edges"][k] for n in names] for k in (0, 3, -1)]
    batches.append(np.array(edge_row))
    with server.client() as http:
        for rows in batches:
            body = {
                "inputs": [
                    {
                        "name": "x",
                        "shape": list(rows.shape),
                        "datatype": "FP64",
                        "data": rows.tolist(),
                    }
                ]
            }
            assert http.post("/v2/models/iris/infer", json=body).status_code == 200
        samples = _scrape(http)
    # The training rule on the values as sent (float64), though the model takes float32: a
    # value equal to an edge must not round past it.
    sent = np.concatenate(batches)
    for column, name in enumerate(names):
        edges = stats[name]["histogram"]["edges"]
        bins = _feature_bins(samples, name)
        expected = _reference_bins(sent[:, column], edges)
        assert [bins[str(i)] for i in range(len(expected))] == expected, name
        assert bins["null"] == 0
    rows_total = _values(samples, "flywheel_monitored_rows_total", "model")["iris"]
    assert rows_total == len(sent)
    predicted = _values(samples, "flywheel_predictions_total", "class")
    assert sum(predicted.values()) == len(sent)
    assert set(predicted) == {"0", "1", "2", "__unseen__"}
    score_count = [v for n, _, v in samples if n == "flywheel_prediction_score_count"]
    assert score_count == [len(sent)]


def test_the_series_count_does_not_depend_on_traffic(
    serve: ServerFactory, shops: Artifacts
) -> None:
    server = serve(shops, "shops")
    rng = np.random.default_rng(2)

    def send(http: httpx.Client, count: int) -> None:
        cities = [f"city{i}" for i in rng.integers(0, 40, size=count)]  # 30..39 were never seen
        body = {
            "inputs": [
                {"name": "city", "shape": [count], "datatype": "BYTES", "data": cities},
                {
                    "name": "spend",
                    "shape": [count],
                    "datatype": "FP32",
                    "data": rng.normal(50, 40, size=count).tolist(),
                },
            ]
        }
        assert http.post("/v2/models/shops/infer", json=body).status_code == 200
        feedback = {"predictions": ["0", "1", "7"], "labels": ["1", "1", f"x{count}"]}
        assert http.post("/v2/models/shops/feedback", json=feedback).status_code == 200

    with server.client() as http:
        send(http, 5)
        _scrape(http)  # the scrape's own request series exist from now on
        first = len(_scrape(http))
        for count in (1, 50, 300, 17):
            send(http, count)
        assert len(_scrape(http)) == first


def test_categorical_values_count_in_their_category_other_unseen_or_null(
    serve: ServerFactory, shops: Artifacts
) -> None:
    server = serve(shops, "shops")
    city = next(f for f in shops.stats["features"] if f["name"] == "city")
    top = [c["value"] for c in city["categories"]]
    others = city["otherValues"]
    assert others, "the fixture has more cities than the top-K"
    sent = [top[0], top[0], top[1], others[0], "atlantis", None]
    body = {
        "inputs": [
            {"name": "city", "shape": [6, 1], "datatype": "BYTES", "data": sent},
            {
                "name": "spend",
                "shape": [6, 1],
                "datatype": "FP32",
                "data": [10, 20, 30, 40, 50, 60],
            },
        ]
    }
    with server.client() as http:
        answer = http.post("/v2/models/shops/infer", json=body)
        assert answer.status_code == 200, answer.text
        bins = _feature_bins(_scrape(http), "city")
    assert bins[top[0]] == 2
    assert bins[top[1]] == 1
    assert (bins["__other__"], bins["__unseen__"], bins["__null__"]) == (1, 1, 1)
    assert set(bins) == {*top, "__other__", "__unseen__", "__null__"}, "bounded by the baseline"


def test_classifier_feedback_counts_a_confusion_matrix(
    serve: ServerFactory, iris: Artifacts
) -> None:
    server = serve(iris, "iris")
    with server.client() as http:
        one = http.post(
            "/v2/models/iris/feedback", json={"id": "r1", "prediction": "0", "label": "0"}
        )
        assert one.json() == {"accepted": 1}
        batch = {"predictions": ["1", "1", "2"], "labels": ["1", "2", "2"]}
        assert http.post("/v2/models/iris/feedback", json=batch).json() == {"accepted": 3}
        items = {"items": [{"prediction": "2", "label": "9"}]}
        assert http.post("/v2/models/iris/versions/3/feedback", json=items).status_code == 200
        samples = _scrape(http)
    confusion = Counter(
        {
            (labels["predicted"], labels["actual"]): value
            for name, labels, value in samples
            if name == "flywheel_feedback_confusion_total" and value
        }
    )
    assert confusion == Counter(
        {("0", "0"): 1, ("1", "1"): 1, ("1", "2"): 1, ("2", "2"): 1, ("2", "__unseen__"): 1}
    )
    assert _values(samples, "flywheel_feedback_labels_total", "model")["iris"] == 5


def test_regressor_predictions_and_errors(serve: ServerFactory, diabetes: Artifacts) -> None:
    server = serve(diabetes, "diabetes")
    width = len(diabetes.features)
    rng = np.random.default_rng(3)
    rows = rng.normal(0, 0.05, size=(40, width))
    body = {
        "inputs": [{"name": "x", "shape": [40, width], "datatype": "FP32", "data": rows.tolist()}]
    }
    with server.client() as http:
        answer = http.post("/v2/models/diabetes/infer", json=body).json()
        (output,) = answer["outputs"]
        assert output["shape"] == [40, 1]
        predictions = np.array(output["data"])
        labels = predictions + rng.normal(0, 10, size=40)
        feedback = {"predictions": predictions.tolist(), "labels": labels.tolist()}
        assert http.post("/v2/models/diabetes/feedback", json=feedback).status_code == 200
        text = {"prediction": "high", "label": 3}
        assert http.post("/v2/models/diabetes/feedback", json=text).status_code == 422
        samples = _scrape(http)
    edges = diabetes.stats["label"]["histogram"]["edges"]
    bins = _values(samples, "flywheel_prediction_values_total", "bin")
    expected = _reference_bins(predictions.astype(np.float32).astype(np.float64), edges)
    assert [bins[str(i)] for i in range(len(expected))] == expected
    absolute = [v for n, _, v in samples if n == "flywheel_feedback_absolute_error_total"]
    assert abs(absolute[0] - np.abs(predictions - labels).sum()) < 1e-6
    squared = [v for n, _, v in samples if n == "flywheel_feedback_squared_error_total"]
    assert abs(squared[0] - ((predictions - labels) ** 2).sum()) < 1e-6


def test_feedback_that_would_overflow_the_error_counters_is_refused(
    serve: ServerFactory, diabetes: Artifacts
) -> None:
    server = serve(diabetes, "diabetes")

    def errors(samples: list[tuple[str, dict[str, str], float]]) -> dict[str, float]:
        return {
            name: value
            for name, _, value in samples
            if name
            in (
                "flywheel_feedback_absolute_error_total",
                "flywheel_feedback_squared_error_total",
                "flywheel_feedback_labels_total",
            )
        }

    with server.client() as http:
        before = errors(_scrape(http))
        for body in (
            {"prediction": -1e308, "label": 1e308},  # the difference overflows float64
            {"prediction": 1e200, "label": 0},  # its square does
            {"predictions": [150.0, -1e308], "labels": [140.0, 1e308]},  # one item of a batch
        ):
            answer = http.post("/v2/models/diabetes/feedback", json=body)
            assert answer.status_code == 422, answer.text
            assert "overflows float64" in answer.json()["error"]
        samples = _scrape(http)
        assert errors(samples) == before, "nothing of a refused feedback is counted"
        assert all(np.isfinite(v) for v in errors(samples).values())
        valid = {"predictions": [150.0, 90.0], "labels": [140.0, 93.0]}
        assert http.post("/v2/models/diabetes/feedback", json=valid).json() == {"accepted": 2}
        after = errors(_scrape(http))
    assert after["flywheel_feedback_labels_total"] == before["flywheel_feedback_labels_total"] + 2
    absolute = after["flywheel_feedback_absolute_error_total"]
    assert absolute == before["flywheel_feedback_absolute_error_total"] + 13.0
    squared = after["flywheel_feedback_squared_error_total"]
    assert squared == before["flywheel_feedback_squared_error_total"] + 109.0
