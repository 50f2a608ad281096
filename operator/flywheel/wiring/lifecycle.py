"""Operator start-up and shut-down: kopf's settings, the watch cache, the reconcilers, the
Prometheus `/metrics` endpoint, and the credentials kopf's watches use."""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from flywheel.api import API_GROUP
from flywheel.core.podspec import MANAGED_BY
from flywheel.core.resources import Resource
from flywheel.kube.client import Kube
from flywheel.settings import OperatorSettings
from flywheel.wiring.operator import Operator

logger = logging.getLogger(__name__)
RETRIES = (0.5, 1, 1, 2, 2, *([3] * 60))
"""kopf's API retries (watches included): short, so a restarted API server is watched again
within a few seconds, and patient (about three minutes) before a watch gives up."""


def configure_kopf(
    settings: kopf.OperatorSettings, ours: OperatorSettings, children: list[Resource]
) -> None:
    """kopf watches and routes; it keeps no state on our objects."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.posting.enabled = False  # the controllers post their own Events
    # No dynamic discovery of namespaces and CRDs: the operator serves the namespaces it is
    # given (or all) and our CRDs, which are installed before it (the chart orders them first).
    # Scanning needs cluster-wide list/watch on namespaces and CRDs, which least privilege does
    # not grant, and without it kopf retries for about a minute at every start.
    settings.scanning.disabled = True
    settings.watching.server_timeout = 300
    settings.networking.request_timeout = 60
    settings.networking.error_backoffs = RETRIES
    selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    for resource in children:
        settings.watching.label_selectors[resource.group, resource.version, resource.plural] = (
            selector
        )
    logging.getLogger().setLevel(ours.log_level)
    # kopf's liveness endpoint logs every probe through aiohttp's access log, and lightkube's
    # httpx every request: the controllers log what they do.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    objects = logging.getLogger("kopf.objects")
    if not any(isinstance(f, QuietRouting) for f in objects.filters):
        objects.addFilter(QuietRouting())
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, QuietRetries) for f in handler.filters):
            handler.addFilter(QuietRetries())


class QuietRetries(logging.Filter):
    """kopf logs every retry of a failed API request (its watch streams' too) as an ERROR: a
    20 s outage makes a hundred lines. Keep the first failure of each request, as the warning it
    is (kopf retries it), and the last if kopf gives up; drop the retries in between."""

    RETRY = re.compile(r"^Request attempt #(\d+)(/\d+)? failed; will retry")

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop retries after the first; the first is a warning."""
        found = self.RETRY.match(record.getMessage())
        if found is None:
            return True
        if int(found.group(1)) > 1:
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf's change detection, unused: the operator registers no change handler, so no essence
    is built or stored (kopf would deep-copy every object, pod templates and all, on every
    watch event, and keep a copy of the spec in an annotation)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        """Nothing to compare."""
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        """Nothing stored."""
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        """Nothing to store."""


class QuietRouting(logging.Filter):
    """Drop kopf's "Handler 'route_x' succeeded." and index lines below DEBUG: one per watch
    event. What the reconciles do is logged (and posted as Events) by the controllers."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep everything except a routine success at INFO."""
        message = record.getMessage()
        return not (
            record.levelno == logging.INFO
            and message.startswith(("Handler 'route_", "Indexing handler 'cache_"))
            and message.endswith("' succeeded.")
        )


async def start_metrics_server(operator: Operator) -> web.AppRunner | None:
    """Serve the injected registry on `/metrics`; None when the port is 0."""
    port = operator.settings.metrics_port
    if not port:
        return None
    registry = operator.metrics.registry

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, operator.settings.bind_address, port).start()
    logger.info("Serving metrics on %s:%d/metrics", operator.settings.bind_address, port)
    return runner


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """The pod's credentials for kopf's watches, as client-go's InClusterConfig reads them:
    the API server at `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT` (kopf's own
    service-account login dials `kubernetes.default.svc`, which needs cluster DNS)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT / "token"
    if not host or not port or not token.exists():
        return None
    ca = SERVICE_ACCOUNT / "ca.crt"
    namespace = SERVICE_ACCOUNT / "namespace"
    return kopf.ConnectionInfo(
        server=f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}",
        ca_path=str(ca) if ca.exists() else None,
        token=token.read_text().strip() or None,
        default_namespace=namespace.read_text().strip() if namespace.exists() else None,
        trust_env=settings.networking.trust_env,
        priority=30,  # above kubeconfig (10), as kopf's service-account login
    )


def register_lifecycle(
    registry: kopf.OperatorRegistry, operator: Operator, indexes: dict[str, Resource]
) -> None:
    """Start-up and clean-up handlers (`indexes`: the cache indices by id)."""
    runners: list[web.AppRunner] = []

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        children = [r for r in operator.resources if r.group != API_GROUP]
        configure_kopf(settings, operator.settings, children)
        for index_id, resource in indexes.items():
            operator.store.attach(resource, kwargs[index_id])
        metrics = operator.metrics
        operator.start(Kube.login(metrics.observe_request))
        runner = await start_metrics_server(operator)
        if runner is not None:
            runners.append(runner)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        while runners:
            await runners.pop().cleanup()
        with contextlib.suppress(RuntimeError):
            await operator.stop()

    @kopf.on.login(registry=registry)
    def login(settings: kopf.OperatorSettings, **_: Any) -> kopf.ConnectionInfo | None:
        # In a pod: the projected service-account token; elsewhere: KUBECONFIG / ~/.kube/config.
        return in_cluster(settings) or kopf.login_with_kubeconfig(settings=settings)

    @kopf.on.probe(id="registry", registry=registry)
    def probe(**_: Any) -> str:
        running = [t for t in operator.tasks if not t.done()]
        if len(running) == len(operator.tasks):
            return "ok"
        return f"{len(running)} of {len(operator.tasks)} workers running"
