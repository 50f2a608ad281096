"""Serving's pure parts: both binning paths agree with numpy; configuration from flags or env."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flywheel_serving.bins import CategoricalBins, NumericBins
from flywheel_serving.config import parse
from flywheel_serving.model import ModelLoadError, resolve


def _reference(values: np.ndarray, edges: list[float]) -> list[int]:
    inside = values[(values >= edges[0]) & (values <= edges[-1])]
    counts, _ = np.histogram(inside, bins=np.asarray(edges))
    return [int((values < edges[0]).sum()), *counts.tolist(), int((values > edges[-1]).sum())]


def test_binning_equals_numpys_histogram() -> None:
    rng = np.random.default_rng(4)
    edges = [sorted(set(np.round(rng.normal(0, 1, 9), 2).tolist())) for _ in range(5)]
    edges[2] = [0.0, 1.0]  # one bin only
    bins = NumericBins.build([(f"f{i}", e) for i, e in enumerate(edges)])
    # Sent as float64 with ties on the edges (2 decimals both); counted as the model's float32.
    sent = np.round(rng.normal(0, 1.5, size=(300, 5)), 2)
    sent[:5] = np.array([[e[k] for e in edges] for k in (0, 0, -1, -1, 1)])
    values = sent.astype(np.float32)
    vectorised = bins.count(values).tolist()
    assert sum(vectorised) == values.size
    expected: list[int] = []
    for column, feature_edges in enumerate(edges):
        reference = _reference(sent[:, column], feature_edges)
        expected += [*reference, 0]  # the null slot
    assert vectorised == expected
    assert bins.labels()[: len(edges[0]) + 2][-1] == ("f0", "null")


def test_categorical_slots() -> None:
    bins = CategoricalBins.build("city", ["Paris", "Lyon"], ["Albi"])
    positions = [bins.position(v) for v in ("Paris", "Lyon", "Albi", "Oslo", None, 7)]
    assert [bins.labels[p] for p in positions] == [
        "Paris",
        "Lyon",
        "__other__",
        "__unseen__",
        "__null__",
        "__unseen__",
    ]


def test_configuration_from_flags_and_environment(tmp_path: Path) -> None:
    env = {
        "FLYWHEEL_SERVING_MODEL_URI": "pvc://c/m.onnx",
        "FLYWHEEL_SERVING_MODEL_NAME": "iris",
        "FLYWHEEL_SERVING_PORT": "9000",
        "FLYWHEEL_SERVING_MONITORING": "false",
    }
    config = parse([], env)
    assert (config.model_uri, config.model_name, config.port) == ("pvc://c/m.onnx", "iris", 9000)
    assert config.monitoring is False
    flags = parse(["--model-uri", "m.onnx", "--model-name", "x", "--max-batch-size", "8"], env)
    assert (flags.model_uri, flags.max_batch_size, flags.intra_op_threads) == ("m.onnx", 8, 1)
    with pytest.raises(SystemExit):
        parse([], {})


def test_artifact_uris_stay_inside_their_claim(tmp_path: Path) -> None:
    assert resolve("pvc://art/models/m.onnx", tmp_path) == tmp_path / "art/models/m.onnx"
    assert resolve("file:///x/m.onnx", tmp_path) == Path("/x/m.onnx")
    for bad in ("pvc://art/../../etc/passwd", "s3://bucket/m.onnx", "pvc://art"):
        with pytest.raises(ModelLoadError):
            resolve(bad, tmp_path)


def test_binning_handles_single_rows_infinities_and_signed_zeros() -> None:
    bins = NumericBins.build([("a", [-1.0, 0.0, 1.0]), ("b", [10.0, 20.0])])
    values = np.array([[-np.inf, np.inf]], dtype=np.float32)
    # a: [underflow, [-1, 0), [0, 1], overflow, null]; b: [underflow, [10, 20], overflow, null]
    assert bins.count(values).tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0]
    values = np.array([[-0.0, 20.0], [0.0, 10.0], [1.0, 9.99]], dtype=np.float32)
    assert bins.count(values).tolist() == [0, 0, 3, 0, 0, 1, 2, 0, 0]
