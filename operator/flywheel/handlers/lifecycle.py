"""Operator start-up and shut-down: kopf settings and the Prometheus `/metrics` endpoint."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.api import API_GROUP
from flywheel.handlers.context import OperatorContext
from flywheel.kube import Kube, in_cluster

logger = logging.getLogger(__name__)


def configure_kopf(settings: kopf.OperatorSettings, context: OperatorContext) -> None:
    """Keep kopf's bookkeeping in annotations under our group, never in our typed `status`.

    kopf's default progress storage also writes `status.kopf`, which the structural schema
    prunes, and the mismatch makes kopf log "Patching failed with inconsistencies".
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-spec"
    )
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    # No dynamic discovery of namespaces and CRDs: the operator serves the namespaces it is
    # given (or all) and our CRDs, which are installed before it (the chart orders them first).
    # Scanning needs cluster-wide list/watch on namespaces and CRDs, which least privilege does
    # not grant, and without it kopf retries for about a minute at every start.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.execution.max_workers = 4
    logging.getLogger().setLevel(context.settings.log_level)
    # kopf's liveness endpoint logs every probe through aiohttp's access log.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietTimers) for f in objects.filters):
        objects.addFilter(QuietTimers())


class QuietTimers(logging.Filter):
    """Drop kopf's "Timer 'x' succeeded." lines below DEBUG: one per object every few seconds,
    and the same for the watch-event handlers of children (one per child change).

    Timers follow Jobs, schedules and rollouts; what they change is logged and posted as Events
    already.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep everything except a successful timer tick or child-event handler at INFO."""
        message = record.getMessage()
        return not (
            record.levelno == logging.INFO
            and message.startswith(
                ("Timer '", "Handler 'restore-", "Handler 'unlink-", "Handler 'forget-")
            )
            and message.endswith("' succeeded.")
        )


async def start_metrics_server(context: OperatorContext) -> web.AppRunner | None:
    """Serve the injected registry on `/metrics`; None when the port is 0."""
    port = context.settings.metrics_port
    if not port:
        return None
    registry = context.metrics.registry

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, context.settings.bind_address, port).start()
    logger.info("Serving metrics on %s:%d/metrics", context.settings.bind_address, port)
    return runner


def register_lifecycle(registry: kopf.OperatorRegistry) -> None:
    """Start-up and clean-up handlers."""
    runners: list[web.AppRunner] = []

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, memo: OperatorContext, **_: Any) -> None:
        configure_kopf(settings, memo)
        memo.connect(Kube.login())
        runner = await start_metrics_server(memo)
        if runner is not None:
            runners.append(runner)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(memo: OperatorContext, **_: Any) -> None:
        while runners:
            await runners.pop().cleanup()
        with contextlib.suppress(RuntimeError):
            await memo.kube.close()

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the projected service-account token; elsewhere: KUBECONFIG / ~/.kube/config.
        return in_cluster(settings) or kopf.login_with_kubeconfig(settings=settings)

    @kopf.on.probe(id="registry", registry=registry)
    def probe(memo: OperatorContext, **_: Any) -> str:
        return "ok" if memo.metrics is not None else "no metrics"
