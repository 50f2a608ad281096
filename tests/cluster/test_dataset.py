"""The Dataset controller on the real cluster with the local node: ingest Jobs really run."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.conftest import OperatorProcess
from tests.support.kube import Kubectl, condition, eventually

CSV_V1 = "x,y,label\n" + "".join(f"{i},{i % 7},{i % 2}\n" for i in range(200))
CSV_V2 = CSV_V1 + "".join(f"{i},{i % 5},{i % 2}\n" for i in range(200, 260))


def _dataset(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"uri": uri}, **spec},  # `source` in spec: the whole source
    }


def _status(k: Kubectl, name: str) -> dict[str, Any]:
    return dict(k.json("get", "dataset", name).get("status", {}))


def _artifact(k: Kubectl, uri: str) -> Path:
    """The host file behind a pvc:// URI (the local node's hostPath volume)."""
    claim, _, relative = uri.removeprefix("pvc://").partition("/")
    volume = k.json("get", "pvc", claim)["spec"]["volumeName"]
    root = k.json("get", "pv", volume)["spec"]["hostPath"]["path"]
    return Path(root) / relative


@pytest.fixture
def web(k: Kubectl, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server that pods can reach: on the node's address (the bridge gateway)."""
    (node,) = k.json("get", "nodes")["items"]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    directory = str(tmp_path)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{address}:{server.server_address[1]}", tmp_path
    server.shutdown()
    server.server_close()


def test_the_quickstart_dataset_becomes_ready_with_stats(
    k: Kubectl, operator: OperatorProcess
) -> None:
    k.apply(Path("examples/quickstart/01-dataset.yaml").read_text())
    k("wait", "--for=condition=Ready", "--timeout=120s", "dataset/iris")
    status = _status(k, "iris")
    assert status["digest"].startswith("sha256:")
    assert status["version"] == status["digest"][7:19]
    assert (status["rows"], status["columns"]) == (150, 5)
    assert (condition({"status": status}, "Validated") or {}).get("status") == "True"
    stats = json.loads(_artifact(k, status["statsURI"]).read_text())
    assert stats["format"] == "flywheel.dev/stats/v1"
    assert stats["dataset"]["digest"] == status["digest"]
    assert len(stats["features"]) == 4
    assert _artifact(k, status["snapshotURI"]).exists()
    assert status["observedGeneration"] == 1
    assert status["lastIngest"]["sourceBytes"] > 0
    assert 0 < status["lastIngest"]["peakMemoryBytes"] < 1024**3, "within the Job's limit"
    events = k.json("get", "events", "--field-selector", "involvedObject.name=iris")["items"]
    assert "VersionPublished" in {e["reason"] for e in events}


def test_refresh_picks_up_new_content_and_ignores_unchanged(
    k: Kubectl, operator: OperatorProcess, web: tuple[str, Path]
) -> None:
    url, root = web
    (root / "data.csv").write_text(CSV_V1)
    k.apply(_dataset("live", f"{url}/data.csv", refresh={"intervalSeconds": 30}))
    k("wait", "--for=condition=Ready", "--timeout=120s", "dataset/live")
    first = _status(k, "live")
    assert first["rows"] == 200

    def checked_again() -> dict[str, Any] | None:
        status = _status(k, "live")
        return (
            status
            if status.get("lastChecked") != first["lastChecked"]
            and status["lastIngest"].get("completionTime")
            else None
        )

    unchanged = eventually(checked_again, timeout=90, what="a refresh")
    assert unchanged["lastIngest"]["result"] == "Unchanged"
    assert len(unchanged["history"]) == 1, "identical content adds no version"

    (root / "data.csv").write_text(CSV_V2)
    updated = eventually(
        lambda: (s := _status(k, "live")).get("rows") == 260 and s,
        timeout=90,
        what="the second version",
    )
    assert updated["digest"] != first["digest"]
    assert [h["digest"] for h in updated["history"]] == [updated["digest"], first["digest"]]


def test_a_failed_rule_keeps_the_previous_version(k: Kubectl, operator: OperatorProcess) -> None:
    k.apply(_dataset("strict", "sklearn://wine"))
    k("wait", "--for=condition=Ready", "--timeout=120s", "dataset/strict")
    good = _status(k, "strict")
    k.apply(
        _dataset(
            "strict",
            "sklearn://wine",
            validation={"minRows": 500, "rules": [{"column": "alcohol", "max": 13}]},
        )
    )
    k("wait", "--for=condition=Validated=False", "--timeout=120s", "dataset/strict")
    status = _status(k, "strict")
    validated = condition({"status": status}, "Validated") or {}
    assert validated["reason"] == "ValidationFailed"
    assert "minRows: 178 rows, at least 500 required" in validated["message"]
    assert "max on alcohol" in validated["message"]
    assert status["digest"] == good["digest"], "the previous version stays current"
    ready = condition({"status": status}, "Ready") or {}
    assert ready["status"] == "True"


def test_an_unreachable_source_is_reported_and_retried(
    k: Kubectl, operator: OperatorProcess
) -> None:
    k.apply(_dataset("offline", "http://127.0.0.1:9/data.csv"))
    k("wait", "--for=condition=SourceAvailable=False", "--timeout=120s", "dataset/offline")
    status = _status(k, "offline")
    available = condition({"status": status}, "SourceAvailable") or {}
    assert available["reason"] == "SourceUnavailable"
    assert "Connection refused" in available["message"]
    ready = condition({"status": status}, "Ready") or {}
    assert ready["status"] == "False"
    retried = eventually(
        lambda: (s := _status(k, "offline"))["lastIngest"].get("retries", 0) >= 2 and s,
        timeout=90,
        what="a retry with back-off",
    )
    assert retried["lastIngest"]["trigger"] == "Retry"


def test_a_malformed_file_stalls_with_the_position(
    k: Kubectl, operator: OperatorProcess, web: tuple[str, Path]
) -> None:
    url, root = web
    (root / "bad.csv").write_text("a,b,label\n1,2,0\n3,4,5,6\n")
    k.apply(_dataset("broken", f"{url}/bad.csv"))
    k("wait", "--for=condition=Stalled", "--timeout=120s", "dataset/broken")
    status = _status(k, "broken")
    stalled = condition({"status": status}, "Stalled") or {}
    assert stalled["reason"] == "ParseError"
    assert "Expected 3 fields in line 3, saw 4" in stalled["message"]
    assert (condition({"status": status}, "Validated") or {}).get("status") == "False"
    assert "digest" not in status, "nothing is published"


PEOPLE = "age,city,label\n" + "".join(
    f"{age},{city},{i % 2}\n"
    for i, (age, city) in enumerate(
        [(31, "Paris"), (45, "Lyon"), (38, "Paris"), (27, "Nice"), (33, "Lyon"), (29, "Paris"),
         (51, "Nice")]
    )
)  # fmt: skip
DECLARED = {
    "features": [{"name": "age", "type": "numeric"}, {"name": "city", "type": "categorical"}]
}


def _refresh(k: Kubectl, name: str, tick: str) -> None:
    k("annotate", "--overwrite", f"dataset/{name}", f"flywheel.dev/refresh-requested-at={tick}")


def test_declared_types_and_the_label_are_checked_at_ingest(
    k: Kubectl, operator: OperatorProcess, web: tuple[str, Path]
) -> None:
    """The upstream story: a declared numeric column starts serving `forty-two` in one row of
    seven. The ingest fails ValidationFailed with the column, the count and the value; the last
    good version stays current. A label with a single class is refused outright."""
    url, root = web
    (root / "people.csv").write_text(PEOPLE)
    (root / "one-class.csv").write_text(PEOPLE.replace(",0\n", ",1\n"))
    k.apply(_dataset("people", f"{url}/people.csv", schema=DECLARED))
    k.apply(_dataset("one-class", f"{url}/one-class.csv"))
    k("wait", "--for=condition=Ready", "--timeout=120s", "dataset/people")
    good = _status(k, "people")
    (root / "people.csv").write_text(PEOPLE.replace("38,Paris", "forty-two,Paris"))
    _refresh(k, "people", "t1")
    k("wait", "--for=condition=Validated=False", "--timeout=120s", "dataset/people")
    status = _status(k, "people")
    validated = condition({"status": status}, "Validated") or {}
    assert validated["reason"] == "ValidationFailed"
    assert validated["message"] == (
        "type of age: declared numeric, but 1 of 7 values are not numbers ('forty-two')"
    )
    assert status["digest"] == good["digest"], "the last good version stays current"
    ready = condition({"status": status}, "Ready") or {}
    assert (ready["status"], ready["reason"]) == ("True", "PreviousVersion")
    assert status["lastIngest"]["result"] == "ValidationFailed"

    k("wait", "--for=condition=Validated=False", "--timeout=120s", "dataset/one-class")
    refused = _status(k, "one-class")
    validated = condition({"status": refused}, "Validated") or {}
    assert validated["reason"] == "ValidationFailed"
    assert "label label: a single value (1) in every row" in validated["message"]
    assert "digest" not in refused, "nothing is published"


@pytest.fixture
def trickle(k: Kubectl) -> Iterator[str]:
    """A server that pods can reach and that sends its body one byte every half second."""
    (node,) = k.json("get", "nodes")["items"]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    requests: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(120):
                try:
                    self.wfile.write(b"1")
                    self.wfile.flush()
                except OSError:
                    return  # the reader gave up
                time.sleep(0.5)

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{address}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_slow_and_oversized_sources_say_so(
    k: Kubectl, operator: OperatorProcess, web: tuple[str, Path], trickle: str
) -> None:
    """A trickling transfer ends `SourceTimeout` (not `SourceRead`, not the Job's deadline) and is
    retried with back-off; a source over `maxBytes` stalls `SourceTooLarge` before it is read."""
    url, root = web
    (root / "big.csv").write_text(PEOPLE * 100)
    k.apply(
        _dataset(
            "slow",
            f"{trickle}/data.csv",
            source={"uri": f"{trickle}/data.csv", "readTimeoutSeconds": 3},
        )
    )
    k.apply(_dataset("big", f"{url}/big.csv", source={"uri": f"{url}/big.csv", "maxBytes": "1Ki"}))
    k("wait", "--for=condition=SourceAvailable=False", "--timeout=120s", "dataset/slow")
    status = _status(k, "slow")
    available = condition({"status": status}, "SourceAvailable") or {}
    assert available["reason"] == "SourceTimeout"
    assert "less than 64 KiB within source.readTimeoutSeconds=3" in available["message"]
    assert (condition({"status": status}, "Stalled") or {}).get("status") == "False"
    retried = eventually(
        lambda: (s := _status(k, "slow"))["lastIngest"].get("retries", 0) >= 2 and s,
        timeout=120,
        what="a retry with back-off",
    )
    assert retried["lastIngest"]["trigger"] == "Retry"
    assert retried["lastIngest"]["result"] == "SourceTimeout"

    k("wait", "--for=condition=Stalled", "--timeout=120s", "dataset/big")
    big = _status(k, "big")
    stalled = condition({"status": big}, "Stalled") or {}
    assert stalled["reason"] == "SourceTooLarge"
    size = len((PEOPLE * 100).encode())
    assert f"{size} bytes, more than the limit of 1024 bytes" in stalled["message"]
    assert (condition({"status": big}, "SourceAvailable") or {}).get("reason") == "SourceTooLarge"
