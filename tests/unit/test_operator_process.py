"""`python -m flywheel` starts, serves liveness and metrics over HTTP, and stops on SIGTERM.

The API server here is deliberately unreachable (a real connection refusal on a closed loopback
port, not a mock): the process must stay up, report liveness, and still shut down cleanly. The
same operator against a real control plane is covered by the cluster tests.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import free_port

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: down
  cluster: {{server: "https://127.0.0.1:{port}", insecure-skip-tls-verify: true}}
users: [{{name: nobody, user: {{token: not-a-token}}}}]
contexts: [{{name: down, context: {{cluster: down, user: nobody}}}}]
current-context: down
"""


def _get(url: str, deadline: float) -> str:
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError as error:
            last = error
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {last}")


@pytest.fixture
def operator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int, Path]]:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG.format(port=free_port()))
    liveness, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FLYWHEEL_LIVENESS_PORT": str(liveness),
        "FLYWHEEL_METRICS_PORT": str(metrics),
        "FLYWHEEL_BIND_ADDRESS": "127.0.0.1",
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "flywheel"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        yield process, liveness, metrics, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_starts_serves_health_and_metrics_and_stops_cleanly(
    operator: tuple[subprocess.Popen[bytes], int, int, Path],
) -> None:
    process, liveness, metrics, log = operator
    deadline = time.monotonic() + 60
    health = _get(f"http://127.0.0.1:{liveness}/healthz", deadline)
    assert '"registry": "ok"' in health
    exposition = _get(f"http://127.0.0.1:{metrics}/metrics", deadline)
    assert "# TYPE flywheel_reconcile_total counter" in exposition
    assert "# TYPE flywheel_reconcile_duration_seconds histogram" in exposition
    assert process.poll() is None, log.read_text()[-2000:]

    process.send_signal(signal.SIGTERM)
    try:
        code = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no exit within 60 s of SIGTERM:\n{log.read_text()[-2000:]}")
    output = log.read_text()
    assert code == 0, output[-2000:]
    assert "Signal SIGTERM is received. Operator is stopping." in output
    assert "Traceback" not in output, output[-3000:]


def test_help_lists_the_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "flywheel", "--help"], capture_output=True, text=True, check=True
    )
    assert "FLYWHEEL_" in result.stdout
