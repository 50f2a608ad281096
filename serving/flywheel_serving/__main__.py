"""`python -m flywheel_serving`: serve one ONNX model (see `--help` for every setting).

uvicorn with uvloop and httptools, access logs off, one process; on SIGTERM the server stops
accepting connections, reports not-ready, and lets in-flight requests finish for
`--drain-seconds`. Scale with replicas: one process per pod and core.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from types import FrameType

import prometheus_client
import uvicorn

from flywheel_serving.app import ServingApp
from flywheel_serving.config import ServingConfig, parse


def serve(config: ServingConfig) -> None:
    """Run the server until SIGTERM/SIGINT."""
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the scrape
    app = ServingApp(config)
    server = _Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            access_log=False,
            log_level=config.log_level,
            timeout_graceful_shutdown=int(config.drain_seconds),
            server_header=False,
        ),
        app,
    )
    server.run()


class _Server(uvicorn.Server):
    """Marks the app as draining as soon as a stop signal arrives (readiness turns 503)."""

    def __init__(self, config: uvicorn.Config, app: ServingApp) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.draining = True
        super().handle_exit(sig, frame)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    serve(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
