"""The kubelet API's log requests off the happy path: malformed options, unknown containers,
instances that never ran or have no predecessor, a log deleted while followed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from devcluster.node.kubelet import LogError, LogSource, locate, options_of, stream
from devcluster.node.logs import LogOptions
from devcluster.node.status import ContainerRun

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


class _Pod:
    def __init__(self, directory: Path, runs: dict[str, ContainerRun]) -> None:
        self.directory = directory
        self.runs = runs

    def container_runs(self) -> dict[str, ContainerRun]:
        return self.runs


@pytest.mark.parametrize(
    "query",
    [{"tailLines": "ten"}, {"limitBytes": "1e3"}, {"sinceSeconds": "-"}, {"sinceTime": "noon"}],
)
def test_malformed_options_are_a_422(query: dict[str, str]) -> None:
    with pytest.raises(LogError, match="invalid log options") as refused:
        options_of(query, NOW)
    assert refused.value.status == 422


def test_the_later_of_since_seconds_and_since_time_wins() -> None:
    given = {"sinceSeconds": "60", "sinceTime": "2026-12-03T11:30:00Z", "timestamps": "true"}
    options = options_of(given, NOW)
    assert options.since == datetime(2026, 12, 3, 11, 59, tzinfo=UTC)
    assert options.timestamps


def test_unknown_containers_and_instances_get_the_kubelets_errors(tmp_path: Path) -> None:
    run = ContainerRun("main", "img")
    pod = _Pod(tmp_path, {"main": run})
    for hostile in ("../etc", "main/../../x", "*"):
        with pytest.raises(LogError, match="not found in pod") as unknown:
            locate("p", pod, hostile, previous=False)
        assert unknown.value.status == 404
    with pytest.raises(LogError, match='"main" in pod "p" is waiting to start: Container'):
        locate("p", pod, "main", previous=False)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "main-0.log").write_bytes(b"")
    run.state = {"running": {}}
    assert locate("p", pod, "main", previous=False).path.name == "main-0.log"
    with pytest.raises(LogError, match="previous terminated container") as none:
        locate("p", pod, "main", previous=True)
    assert none.value.status == 400


async def test_a_log_deleted_while_followed_ends_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "main-0.log"
    path.write_bytes(b"2026-12-03T12:00:00.000000000Z stdout F first\n")
    sent: list[bytes] = []

    class Sink:
        async def write(self, data: bytes) -> None:
            sent.append(data)
            path.unlink()  # the pod is deleted while its log is followed

    await stream(LogSource(path, lambda: True), LogOptions(), Sink(), follow=True)
    assert sent == [b"first\n"]
