"""`python -m flywheel_serving`: serve one ONNX model (see `--help` for every setting).

uvicorn with uvloop and httptools, access logs off, one process. On SIGTERM the server reports
not-ready at once but keeps answering for `--shutdown-delay-seconds` (endpoints and load balancers
take a moment to stop routing to a terminating pod; Kubernetes sends SIGTERM and removes the
endpoint at the same time), then stops accepting connections and lets in-flight requests finish
for `--drain-seconds`. A second signal stops at once. The gRPC API (`--grpc-port`, 0: none)
runs in the same event loop, listens before the HTTP port does and drains with it. Scale with
replicas: one process per pod and core.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import prometheus_client
import uvicorn

from flywheel_serving.app import ServingApp
from flywheel_serving.config import ServingConfig, parse
from flywheel_serving.http import HttpLimits, limited_protocol
from flywheel_serving.oip_grpc import servicer

logger = logging.getLogger("flywheel_serving")


STARTUP_FAILURE = 3
"""The exit status when the gRPC port cannot be bound (uvicorn's for the HTTP port)."""


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
            http=limited_protocol(
                HttpLimits(
                    max_header_bytes=config.max_header_bytes,
                    max_headers=config.max_headers,
                    header_timeout_seconds=config.header_timeout_seconds,
                    body_timeout_seconds=config.body_timeout_seconds,
                )
            ),
            timeout_keep_alive=max(1, round(config.keep_alive_seconds)),
            lifespan="on",
            access_log=False,
            log_level=config.log_level,
            timeout_graceful_shutdown=int(config.drain_seconds),
            server_header=False,
        ),
        app,
        config.shutdown_delay_seconds,
    )
    server.run()


class _Server(uvicorn.Server):
    """Marks the app as draining as soon as a stop signal arrives (readiness turns 503) and
    stops listening only after the shutdown delay; runs the gRPC server beside the HTTP one."""

    def __init__(self, config: uvicorn.Config, app: ServingApp, delay: float = 0.0) -> None:
        super().__init__(config)
        self._app = app
        self._delay = delay
        self._exit_at: float | None = None
        self._grpc: Any = None  # grpc.aio.Server

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # gRPC first, so that once HTTP answers (the probes) the gRPC port listens too.
        if self._app.config.grpc_port != 0:
            try:
                self._grpc = await servicer.start(self._app)
            except RuntimeError as error:  # the port is taken or the address is not ours
                logger.error("gRPC server not started: %s", error)
                sys.exit(STARTUP_FAILURE)
        try:
            await super().startup(sockets)
        except SystemExit:  # uvicorn could not listen: nothing to drain
            if self._grpc is not None:
                await self._grpc.stop(None)
            raise

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._grpc is None:
            await super().shutdown(sockets)
            return
        # Both stop accepting at once; in-flight calls and requests get the same drain.
        grace = self.config.timeout_graceful_shutdown
        stopping = asyncio.ensure_future(self._grpc.stop(grace))
        await super().shutdown(sockets)
        while not stopping.done() and not self.force_exit:
            await asyncio.wait({stopping}, timeout=0.1)
        if not stopping.done():  # a second signal: cancel the calls still running
            await self._grpc.stop(None)
        await stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._app.draining = True
        if self._exit_at is None and self._delay > 0:
            self._exit_at = time.monotonic() + self._delay
            logger.info("stop signal: not ready; closing in %.1f s", self._delay)
            return
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop asks every 0.1 s whether to stop.
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self.should_exit = True
        return await super().on_tick(counter)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    serve(parse(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
