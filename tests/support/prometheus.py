"""A real Prometheus server for the tests: Debian's `prometheus` package, unpacked into the
user cache (no root needed, nothing installed system-wide) and started on loopback.

`ensure_prometheus` fetches the .deb with `apt-get download` once and extracts it with
`dpkg-deb -x`; `make prometheus` (run by `.ci/run`) does the same ahead of the tests. If the
package cannot be had, the tests that need it FAIL with the reason: nothing is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from tests.support.ports import free_port

CACHE = Path(os.environ.get("FLYWHEEL_CACHE", Path.home() / ".cache" / "flywheel")) / "prometheus"
BINARY = CACHE / "root" / "usr" / "bin" / "prometheus"


class PrometheusUnavailable(RuntimeError):
    """The Debian package could not be fetched or unpacked."""


def ensure_prometheus() -> Path:
    """The prometheus binary, fetched from Debian's packages on first use."""
    if BINARY.exists():
        return BINARY
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE) as work:
        fetched = subprocess.run(
            ["apt-get", "download", "prometheus"], cwd=work, capture_output=True, text=True
        )
        if fetched.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
            fetched = subprocess.run(
                ["apt-get", "download", "prometheus"], cwd=work, capture_output=True, text=True
            )
        debs = list(Path(work).glob("prometheus_*.deb"))
        if fetched.returncode != 0 or not debs:
            raise PrometheusUnavailable(f"apt-get download prometheus failed: {fetched.stderr}")
        unpacked = subprocess.run(
            ["dpkg-deb", "-x", str(debs[0]), str(CACHE / "root")], capture_output=True, text=True
        )
        if unpacked.returncode != 0 or not BINARY.exists():
            raise PrometheusUnavailable(f"dpkg-deb -x failed: {unpacked.stderr}")
    return BINARY


def _wait_scraped(url: str, targets: int, log: Path) -> None:
    """Until every target was scraped once: the scrape manager starts targets a few seconds
    after the server is ready, and traffic before a series' first sample is not in increase()."""
    query = urllib.parse.urlencode({"query": "count(up == 1)"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as answer:
            result = json.loads(answer.read())["data"]["result"]
        if result and int(float(result[0]["value"][1])) == targets:
            return
        time.sleep(0.2)
    raise PrometheusUnavailable(f"prometheus did not scrape its targets: {log.read_text()[-3000:]}")


@contextmanager
def prometheus_server(
    directory: Path, targets: list[str], labels: dict[str, str], scrape_seconds: float = 1
) -> Iterator[str]:
    """A Prometheus scraping `targets` (`ip:port`) with static `labels`; yields its base URL."""
    binary = ensure_prometheus()
    port = free_port()
    config = {
        "global": {"scrape_interval": f"{scrape_seconds}s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "serving", "static_configs": [{"targets": targets, "labels": labels}]}
        ],
    }
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = directory / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise PrometheusUnavailable(f"prometheus exited: {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise PrometheusUnavailable(f"prometheus not ready: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        _wait_scraped(url, len(targets), log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
