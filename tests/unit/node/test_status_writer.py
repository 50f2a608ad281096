"""The node's status writer and final calls against a fake API: the real client's non-ApiError
failures under load (a timeout, a dropped connection) cannot be produced on demand against the
real API server, so these faults are injected; tests/cluster/test_node.py runs the real thing
(100 Jobs under a CPU hog)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from devcluster.node.api import ApiError
from devcluster.node.status_writer import StatusWriter, persist


async def test_the_status_writer_retries_any_failure_until_the_latest_status_is_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults: list[Exception] = [
        aiohttp.ServerDisconnectedError(),
        TimeoutError(),
        ConnectionResetError("reset by peer"),
        ApiError(500, "etcdserver: request timed out"),
        ValueError("Expecting value: line 1 column 1"),
    ]
    current = {"phase": "Running"}
    written: list[str] = []

    async def write() -> None:
        if faults:
            raise faults.pop(0)
        written.append(current["phase"])

    writer = StatusWriter(write, "pod t/p", first_retry=0.01, max_retry=0.04, pace=0.0)
    writer.start()
    writer.mark()
    await asyncio.sleep(0.02)
    current["phase"] = "Succeeded"  # changed while the writes keep failing
    with caplog.at_level(logging.WARNING):
        assert await asyncio.wait_for(writer.flush(), 10)
    await writer.stop()
    assert written[-1] == "Succeeded", "the latest status is what gets written"
    assert writer.failures == 5
    for name in ("ServerDisconnectedError", "TimeoutError", "ConnectionResetError", "500"):
        assert name in caplog.text


async def test_the_status_writer_ends_only_when_the_pod_is_gone() -> None:
    calls = 0

    async def write() -> None:
        nonlocal calls
        calls += 1
        raise ApiError(404, "pods not found") if calls > 2 else OSError("connection refused")

    writer = StatusWriter(write, "pod t/gone", first_retry=0.01, max_retry=0.02, pace=0.0)
    writer.start()
    assert await asyncio.wait_for(writer.flush(), 10) is False
    assert writer.gone
    assert calls == 3
    await writer.stop()


async def test_a_final_call_is_retried_until_it_succeeds_or_the_object_is_gone() -> None:
    outcomes: list[Exception | None] = [aiohttp.ClientPayloadError("cut"), TimeoutError(), None]

    async def delete() -> str:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome
        return "deleted"

    assert await persist(delete, "delete pod", first_retry=0.01) == "deleted"

    async def replaced() -> str:
        raise ApiError(409, "Precondition failed: UID in precondition")

    assert await persist(replaced, "delete pod", first_retry=0.01, final=(404, 409)) is None
