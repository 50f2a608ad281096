"""Server configuration: command-line flags, each with a `FLYWHEEL_SERVING_*` variable.

One process serves one model. `python -m flywheel_serving --help` lists every flag; the
environment variable of `--model-uri` is `FLYWHEEL_SERVING_MODEL_URI`, and so on.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from flywheel_serving import names
from flywheel_serving.names import PORT

ARTIFACTS_ROOT = Path(names.ARTIFACTS_ROOT)
"""Where pods mount artifact claims: `pvc://<claim>/<path>` is `<root>/<claim>/<path>`."""


@dataclass(frozen=True)
class ServingConfig:
    """How the server runs."""

    model_uri: str
    model_name: str
    model_version: str = "1"
    sha256: str = ""
    card_uri: str = ""
    stats_uri: str = ""
    host: str = "0.0.0.0"
    port: int = PORT
    artifacts_root: Path = ARTIFACTS_ROOT
    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_size: int = 0
    max_latency_ms: float = 2.0
    intra_op_threads: int = 1
    monitoring: bool = True
    drain_seconds: float = 20.0
    shutdown_delay_seconds: float = 0.0
    log_level: str = "info"


_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("model-uri", str, "The ONNX model: a path, file:// or pvc://<claim>/<path> URI (required)."),
    ("model-name", str, "The name served under /v2/models/<name> (required)."),
    ("model-version", str, "The version served under /versions/<v> (default 1)."),
    (
        "sha256",
        str,
        "The expected sha256 of the model file (required): the server is never ready "
        "without it or when the file differs.",
    ),
    (
        "card-uri",
        str,
        "The model card JSON (features, class labels); default: card.json next to the model.",
    ),
    (
        "stats-uri",
        str,
        "The training baseline (flywheel.dev/stats/v1) whose bins the monitoring "
        "metrics use; empty: no feature metrics.",
    ),
    ("host", str, "Listen address (default 0.0.0.0)."),
    ("port", int, f"Listen port (default {PORT})."),
    (
        "artifacts-root",
        Path,
        "Where artifact claims are mounted (default /var/lib/flywheel/artifacts).",
    ),
    ("max-body-bytes", int, "Largest accepted request body; larger ones get 413 (default 8 MiB)."),
    (
        "max-batch-size",
        int,
        "Adaptive batching: merge concurrent requests into one session run of "
        "up to this many rows (0: off, the default).",
    ),
    (
        "max-latency-ms",
        float,
        "Adaptive batching: the longest a request waits for others (default 2).",
    ),
    (
        "intra-op-threads",
        int,
        "onnxruntime threads per session run (default 1: one per core and "
        "process avoids spin-wait contention).",
    ),
    (
        "shutdown-delay-seconds",
        float,
        "On SIGTERM, keep accepting requests this long while readiness reports 503, so load "
        "balancers stop routing here before the socket closes (default 0; serving pods use 5).",
    ),
    ("drain-seconds", float, "After that, how long in-flight requests may finish (default 20)."),
    ("log-level", str, "debug, info, warning or error (default info)."),
)


def parse(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> ServingConfig:
    """The configuration from flags, falling back to `FLYWHEEL_SERVING_*` variables."""
    environ = os.environ if env is None else env
    parser = argparse.ArgumentParser(
        prog="python -m flywheel_serving",
        description="Serve one ONNX model over the Open Inference Protocol v2.",
    )
    for flag, kind, text in _FLAGS:
        variable = "FLYWHEEL_SERVING_" + flag.upper().replace("-", "_")
        default = environ.get(variable)
        parser.add_argument(
            f"--{flag}",
            type=kind,
            default=kind(default) if default else None,
            help=f"{text} [{variable}]",
        )
    monitoring = environ.get("FLYWHEEL_SERVING_MONITORING", "true").lower() not in ("0", "false")
    parser.add_argument(
        "--no-monitoring",
        dest="monitoring",
        action="store_false",
        default=monitoring,
        help="Turn off the feature and prediction metrics [FLYWHEEL_SERVING_MONITORING=false].",
    )
    args = parser.parse_args(argv)
    if not args.model_uri or not args.model_name:
        parser.error("--model-uri and --model-name are required")
    given = {k: v for k, v in vars(args).items() if v is not None}
    return ServingConfig(**given)
