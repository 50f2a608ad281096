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
from flywheel_serving.names import GRPC_PORT, PORT

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
    grpc_port: int = GRPC_PORT
    artifacts_root: Path = ARTIFACTS_ROOT
    max_body_bytes: int = 8 * 1024 * 1024
    max_header_bytes: int = 16 * 1024
    max_headers: int = 100
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_seconds: float = 15.0
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
        "A model card file checked against the card embedded in the model (which the sha256 "
        "covers and the server always serves by); default: card.json next to the model, if "
        "present. A file that differs, or one for a model that embeds no card, keeps the model "
        "from being served (ArtifactDigestMismatch).",
    ),
    (
        "stats-uri",
        str,
        "The training baseline (flywheel.dev/stats/v1) whose bins the monitoring "
        "metrics use; empty: no feature metrics.",
    ),
    ("host", str, "Listen address (default 0.0.0.0)."),
    ("port", int, f"Listen port of the REST API and /metrics (default {PORT})."),
    (
        "grpc-port",
        int,
        f"Listen port of the gRPC API (inference.GRPCInferenceService; default {GRPC_PORT}; "
        "0: no gRPC server).",
    ),
    (
        "artifacts-root",
        Path,
        "Where artifact claims are mounted (default /var/lib/flywheel/artifacts).",
    ),
    (
        "max-body-bytes",
        int,
        "Largest accepted request body (REST) or message (gRPC); larger ones get 413 / "
        "RESOURCE_EXHAUSTED (default 8 MiB).",
    ),
    (
        "max-header-bytes",
        int,
        "Largest request line plus headers of one HTTP request; larger ones get 431 and the "
        "connection closes (default 16 KiB).",
    ),
    ("max-headers", int, "Most headers in one HTTP request; more get 431 (default 100)."),
    (
        "header-timeout-seconds",
        float,
        "The longest a client may take to send a request's line and headers, from its first "
        "byte; slower ones get 408 and the connection closes (default 10).",
    ),
    (
        "body-timeout-seconds",
        float,
        "The longest a client may take to send a request's body after its headers; slower ones "
        "get 408 and the connection closes (default 30).",
    ),
    (
        "keep-alive-seconds",
        float,
        "How long an idle keep-alive connection stays open between requests (default 15).",
    ),
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
