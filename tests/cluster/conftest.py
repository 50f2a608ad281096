"""Fixtures for tests of the operator process against the real control plane (tests/cluster):
the operator run from this checkout with its log captured. The cluster, the CRDs and the
per-test namespace come from tests/conftest.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.kube import Kubectl
from tests.support.ports import free_port


@dataclass
class OperatorProcess:
    """The operator running against the test cluster, watching the test's namespace."""

    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    def output(self) -> str:
        """Everything the operator logged so far."""
        return self.log.read_text(errors="replace")


OperatorFactory = Callable[..., OperatorProcess]


def launch_operator(
    kubeconfig: Path, namespace: str, log: Path, **extra_env: str
) -> OperatorProcess:
    """Start `python -m flywheel --namespace <namespace>` against a cluster, its log in `log`."""
    metrics_port = free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FLYWHEEL_LIVENESS_PORT": str(free_port()),
        "FLYWHEEL_METRICS_PORT": str(metrics_port),
        "FLYWHEEL_BIND_ADDRESS": "127.0.0.1",
        **extra_env,
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flywheel", "--namespace", namespace],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return OperatorProcess(process, log, metrics_port)


def stop_operator(handle: OperatorProcess) -> None:
    """SIGTERM (SIGKILL after 30 s), then print the log tail (pytest shows it on failure)."""
    process = handle.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    print(f"--- operator log ({handle.log}) ---\n{handle.output()[-6000:]}")


@pytest.fixture
def start_operator(kubectl: Kubectl, namespace: str, tmp_path: Path) -> Iterator[OperatorFactory]:
    """Start `python -m flywheel --namespace <test namespace>` (extra env as keywords)."""
    started: list[OperatorProcess] = []

    def start(**extra_env: str) -> OperatorProcess:
        log = tmp_path / f"operator-{len(started)}.log"
        handle = launch_operator(kubectl.kubeconfig, namespace, log, **extra_env)
        started.append(handle)
        return handle

    try:
        yield start
    finally:
        for handle in started:
            stop_operator(handle)


@pytest.fixture
def operator(start_operator: OperatorFactory) -> OperatorProcess:
    """The operator watching the test's namespace."""
    return start_operator()
