"""The model card is covered by the model's sha256: a card file that misdescribes the model is
never served (issue 20, item 6).

Training embeds the card in the ONNX metadata before the bytes are hashed; the server takes it
from the verified bytes, and a card.json beside them must say the same.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import onnx

from flywheel_serving.model import resolve
from flywheel_serving.names import MODEL_CARD_METADATA_KEY
from tests.serving.conftest import Artifacts, Server, ServerFactory

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


def _logged(server: Server, text: str) -> None:
    """Wait (up to 10 s) until the server has logged `text`: its model load is over."""
    for _ in range(100):
        if text in server.output():
            return
        threading.Event().wait(0.1)


def _stored(iris: Artifacts) -> tuple[Path, bytes, bytes]:
    """The stored model's path, bytes and card.json bytes."""
    path = resolve(iris.model_uri, iris.root)
    return path, path.read_bytes(), path.with_name("card.json").read_bytes()


def _copy(tmp_path: Path, name: str, model: bytes, card: bytes | None) -> tuple[str, str]:
    """A model directory of its own (never the shared fixture's): its URI and sha256."""
    directory = tmp_path / name
    directory.mkdir()
    (directory / "model.onnx").write_bytes(model)
    if card is not None:
        (directory / "card.json").write_bytes(card)
    return f"file://{directory / 'model.onnx'}", hashlib.sha256(model).hexdigest()


def _infer(rows: list[list[float]]) -> dict[str, Any]:
    tensor = {"name": "x", "shape": [len(rows), 4], "datatype": "FP32", "data": rows}
    return {"inputs": [tensor]}


def _not_served(server: Server, *said: str) -> str:
    """The server stays un-ready with ArtifactDigestMismatch, and its log and readiness say
    why; the reason readiness gives."""
    _logged(server, "ArtifactDigestMismatch")
    with server.client() as http:
        ready = http.get("/v2/health/ready")
        assert ready.status_code == 503
        error = ready.json()["error"]
        assert "ArtifactDigestMismatch" in error
        assert http.get("/v2/models/iris/ready").status_code == 503
        assert http.post("/v2/models/iris/infer", json=_infer(ROWS)).status_code == 503
        assert http.get("/v2/health/live").status_code == 200, "alive: the log says why"
        assert 'flywheel_model_ready{model="iris",version="3"} 0.0' in http.get("/metrics").text
    log = server.output()
    assert "model iris not served: ArtifactDigestMismatch" in log
    for text in said:
        assert text in log, text
        assert text in error, text
    return str(error)


def test_the_stored_model_embeds_its_card(iris: Artifacts) -> None:
    _, model, card = _stored(iris)
    assert hashlib.sha256(model).hexdigest() == iris.sha256
    metadata = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
    assert metadata[MODEL_CARD_METADATA_KEY].encode() == card, "the same JSON as card.json"


def test_a_tampered_card_is_never_ready(
    serve: ServerFactory, iris: Artifacts, tmp_path: Path
) -> None:
    _, model, card = _stored(iris)
    tampered = json.loads(card)
    signature = tampered["signature"]
    signature["features"] = list(reversed(signature["features"]))
    signature["classLabels"] = list(reversed(signature["classLabels"]))
    uri, sha256 = _copy(tmp_path, "tampered", model, json.dumps(tampered, indent=1).encode())
    assert sha256 == iris.sha256, "the model's bytes are untouched: only the card lies"
    server = serve(iris, "iris", wait_ready=False, model_uri=uri)
    _not_served(
        server,
        "card.json does not match the model card embedded in the verified model",
        "features reordered",
        "classLabels reversed",
        '["2", "1", "0"] in the file, ["0", "1", "2"] in the model',
    )
    # The same through --card-uri: it names the file it refused.
    elsewhere = tmp_path / "elsewhere.json"
    only_classes = json.loads(card)
    only_classes["signature"]["classLabels"] = ["setosa", "versicolor", "virginica"]
    elsewhere.write_text(json.dumps(only_classes))
    other = serve(iris, "iris", wait_ready=False, card_uri=f"file://{elsewhere}")
    error = _not_served(other, f"file://{elsewhere} does not match", "classLabels: ")
    assert "features" not in error, "only what differs is named"


def test_an_untampered_model_serves_with_the_embedded_card(
    serve: ServerFactory, iris: Artifacts, tmp_path: Path
) -> None:
    _, model, card = _stored(iris)
    # A card file that says what the embedded card says serves; so does no card file at all:
    # the card comes from the verified bytes either way.
    same = json.loads(card)
    same["notes"] = "fields outside the signature are not what the server serves by"
    for name, file in (("same", json.dumps(same).encode()), ("none", None)):
        uri, sha256 = _copy(tmp_path, name, model, file)
        server = serve(iris, "iris", model_uri=uri, sha256=sha256)
        with server.client() as http:
            metadata = http.get("/v2/models/iris").json()
            assert [i["name"] for i in metadata["inputs"]] == FEATURES, name
            assert metadata["parameters"]["class_labels"] == ["0", "1", "2"], name
            answer = http.post("/v2/models/iris/infer", json=_infer(ROWS))
            assert answer.status_code == 200, answer.text
            assert answer.json()["outputs"][0]["data"] == ["0", "2"]


def test_a_model_without_an_embedded_card_is_not_served_with_a_card_file(
    serve: ServerFactory, iris: Artifacts, tmp_path: Path
) -> None:
    _, model, card = _stored(iris)
    proto = onnx.load_from_string(model)
    del proto.metadata_props[:]
    bare = proto.SerializeToString()
    uri, sha256 = _copy(tmp_path, "bare", bare, card)
    server = serve(iris, "iris", wait_ready=False, model_uri=uri, sha256=sha256)
    _not_served(server, "card.json describes the model, but the model embeds no card")
    # Without the file, the graph's own inputs describe the features, as before cards were
    # embedded; no class names are known then.
    shutil.rmtree(tmp_path / "bare")
    uri, sha256 = _copy(tmp_path, "bare", bare, None)
    graph = serve(iris, "iris", model_uri=uri, sha256=sha256)
    with graph.client() as http:
        metadata = http.get("/v2/models/iris").json()
        names = [i.name for i in onnx.load_from_string(bare).graph.input]
        assert [i["name"] for i in metadata["inputs"]] == names
        assert metadata["parameters"]["class_labels"] == []
