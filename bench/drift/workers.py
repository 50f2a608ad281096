"""The peers' virtualenvs and worker processes (peers.py runs inside them).

Each peer gets its own virtualenv under $FLYWHEEL_BENCH_DIR (default
~/.cache/flywheel/bench-drift/<peer>-venv), made with `uv venv --python 3.11` and `uv pip install`
from PyPI at the pins below, as bench/serving does, and reused while the pins are unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import peer_venv

from drift.streams import StreamSpec

WORK = Path(os.environ.get("FLYWHEEL_BENCH_DIR", Path.home() / ".cache/flywheel/bench-drift"))
WORKER = Path(__file__).resolve().parent / "peers.py"
PEERS: dict[str, list[str]] = {
    "evidently": ["evidently==0.7.23", "pandas==2.3.3"],
    # nannyml 0.13.1 imports statsmodels without declaring it.
    "nannyml": ["nannyml==0.13.1", "statsmodels==0.15.0", "pandas==2.3.3"],
}


def ensure_venv(peer: str) -> Path:
    """The peer's own virtualenv (uv, Python 3.11, PyPI), reused while its pins are unchanged."""
    return peer_venv.ensure_venv(WORK / f"{peer}-venv", PEERS[peer])


def fields(spec: StreamSpec) -> list[Any]:
    """A spec as JSON fields."""
    return [spec.kind, spec.size, spec.rows, spec.seed]


def launch(peer: str, name: str, job: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one worker on a job; its JSON lands in the returned path."""
    run = WORK / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{name}.job.json").write_text(json.dumps(job))
    out = run / f"{name}.out.json"
    out.unlink(missing_ok=True)
    argv = [str(WORK / f"{peer}-venv/bin/python"), str(WORKER), "--peer", peer]
    argv += ["--job", str(run / f"{name}.job.json"), "--out", str(out)]
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    with (run / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, out


def collect(process: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Wait for a worker and read its result."""
    if process.wait() != 0:
        raise SystemExit(f"worker failed: {out.with_suffix('').with_suffix('.log').read_text()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result
