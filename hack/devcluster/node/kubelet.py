"""The kubelet API the API server calls on a node: container logs (`kubectl logs`), exec
(`kubectl exec`) and port-forward (`kubectl port-forward`).

Served over HTTPS on the node's InternalIP, port 10250 (`status.daemonEndpoints`), with a
serving certificate from the cluster CA naming that address; only clients with a certificate
from the cluster CA are served, and of those only the API server's kubelet client
(`--kubelet-client-certificate`, CN kube-apiserver-kubelet-client) and cluster admins
(O=system:masters) are authorised; anyone else gets 403,
and the API server verifies the node (`--kubelet-certificate-authority`).

`GET /containerLogs/<namespace>/<pod>/<container>` answers as the kubelet does: `follow`,
`previous`, `timestamps`, `tailLines`, `limitBytes`, `sinceSeconds` and `sinceTime`; a chunked
body that, with `follow`, ends when the container instance does; 400 with the kubelet's words
for a container that has not run (`is waiting to start`) or has no previous instance, 404 for a
pod or container it does not know.

`/exec/<namespace>/<pod>/<container>` and `/portForward/<namespace>/<pod>` (POST or GET, with
or without the pod's UID after its name) upgrade the connection to SPDY/3.1 (`upgrade`) and run
the remote command protocol (`remotecommand`) or the port-forward protocol (`portforward`) on
it; before the upgrade, 404 for a pod or container the node does not know and 400 for a
container that is not running or a request without streams. `attach` is refused with a status
on the upgraded connection (kubectl prints its message), `run` with 501.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

from devcluster.node import portforward, remotecommand, upgrade
from devcluster.node.logs import LogOptions, limited, parse_time, select
from devcluster.node.spdy import Session
from devcluster.node.status import ContainerRun

KUBELET_PORT = 10250
FOLLOW_POLL = 0.2
NOT_SERVED = (
    "the local node does not implement attach (docs/local-cluster.md): use kubectl logs -f "
    "for a container's output, or kubectl exec"
)
"""The answer to `attach`."""


@dataclass(frozen=True)
class Tls:
    """The node's serving certificate and the CA its clients' certificates come from."""

    cert: Path
    key: Path
    client_ca: Path

    def context(self) -> ssl.SSLContext:
        """A server context that requires a client certificate from the CA."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.client_ca))
        context.load_cert_chain(self.cert, self.key)
        context.verify_mode = ssl.CERT_REQUIRED
        return context


class PodLogs(Protocol):
    """What the server reads of a pod the node runs."""

    directory: Path

    def container_runs(self) -> dict[str, ContainerRun]:
        """Every container (init containers too) by name, with its current run."""
        ...


class KubeletPod(PodLogs, Protocol):
    """What the server uses of a pod the node runs: its logs, its IP, running commands in it."""

    pod_ip: str | None

    def exec_command(self, name: str, argv: list[str]) -> tuple[list[str], int] | None:
        """The host command line running `argv` in the running container `name`, and the pid
        of the container's process (None when it is not running)."""
        ...


class LogError(Exception):
    """A request the kubelet answers with an error: the status and its plain-text message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LogSource:
    """The log file of one container instance, and whether that instance may still write."""

    path: Path
    live: Callable[[], bool]


def locate(pod_name: str, pod: PodLogs, container: str, *, previous: bool) -> LogSource:
    """The instance `kubectl logs [--previous]` means, with the kubelet's errors."""
    run = pod.container_runs().get(container)
    if run is None:
        raise LogError(404, f'container "{container}" not found in pod "{pod_name}"')
    logs = pod.directory / "logs"

    def restarts() -> list[int]:
        found = (p.stem.rsplit("-", 1) for p in logs.glob(f"{container}-*.log"))
        return sorted(int(n) for name, n in found if name == container and n.isdigit())

    instances = restarts()
    # While the container waits (back-off), its last run is `lastState`: both the current logs
    # and --previous show it, as the kubelet's lastState fallback does.
    waiting = "waiting" in run.state and bool(instances)
    if previous:
        wanted = instances[-1] if waiting else (instances[-2] if len(instances) > 1 else None)
        if wanted is None:
            raise LogError(
                400, f'previous terminated container "{container}" in pod "{pod_name}" not found'
            )
    elif instances:
        wanted = instances[-1]
    else:
        reason = run.state.get("waiting", {}).get("reason", "ContainerCreating")
        raise LogError(
            400, f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}'
        )

    def live() -> bool:
        return run.running and restarts()[-1:] == [wanted]

    return LogSource(logs / f"{container}-{wanted}.log", live)


def options_of(query: dict[str, str], now: datetime) -> LogOptions:
    """The output options of a `containerLogs` query (422 for a malformed one)."""
    try:
        tail = int(query["tailLines"]) if "tailLines" in query else None
        limit = int(query["limitBytes"]) if "limitBytes" in query else None
        since = None
        if "sinceSeconds" in query:
            since = now - timedelta(seconds=int(query["sinceSeconds"]))
        if "sinceTime" in query:
            given = parse_time(query["sinceTime"])
            since = given if since is None else max(since, given)
    except ValueError as error:
        raise LogError(422, f"invalid log options: {error}") from error
    return LogOptions(_true(query, "timestamps"), tail, limit, since)


def _true(query: Mapping[str, str], name: str) -> bool:
    return query.get(name, "false").lower() in ("true", "1")


class KubeletServer:
    """The node's HTTPS endpoint for the API server."""

    def __init__(
        self, find: Callable[[str, str], KubeletPod | None], tls: Tls, host: str, port: int
    ) -> None:
        self.find = find
        self.tls = tls
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._sessions: set[Session] = set()

    async def start(self) -> None:
        """Listen."""
        app = web.Application(middlewares=[_authorized])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._logs)
        for method in ("GET", "POST"):
            for path in ("/{namespace}/{pod}/{container}", "/{namespace}/{pod}/{uid}/{container}"):
                app.router.add_route(method, "/exec" + path, self._exec)
            for path in ("/{namespace}/{pod}", "/{namespace}/{pod}/{uid}"):
                app.router.add_route(method, "/portForward" + path, self._port_forward)
            for path in ("/{namespace}/{pod}/{container}", "/{namespace}/{pod}/{uid}/{container}"):
                app.router.add_route(method, "/attach" + path, self._attach)
        app.router.add_route("*", "/run/{rest:.*}", self._not_served)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.tls.context())
        await site.start()

    async def stop(self) -> None:
        """Stop listening; open log streams, exec and port-forward sessions end."""
        for session in list(self._sessions):
            session.feed_eof()
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()

    async def _not_served(self, request: web.Request) -> web.Response:
        return web.Response(status=501, text="the local node does not implement /run")

    def _pod(self, request: web.Request) -> KubeletPod:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        pod = self.find(namespace, name)
        if pod is None:
            raise upgrade.UpgradeError(404, f'pod "{name}" does not exist')
        return pod

    async def _exec(self, request: web.Request) -> web.StreamResponse:
        name, container = request.match_info["pod"], request.match_info["container"]
        try:
            pod = self._pod(request)
            options = remotecommand.exec_options(request.query, request.query.getall("command", []))
            if not options.command:
                raise ValueError("you must specify a command")
            if container not in pod.container_runs():
                raise upgrade.UpgradeError(
                    404, f'container "{container}" not found in pod "{name}"'
                )
            found = pod.exec_command(container, options.command)
            if found is None:
                raise upgrade.UpgradeError(
                    400, f'container "{container}" in pod "{name}" is not running'
                )
            protocol = upgrade.negotiate(request, remotecommand.PROTOCOLS)
        except ValueError as error:
            return web.Response(status=400, text=str(error))
        except upgrade.UpgradeError as error:
            return error.response()
        argv, pid = found
        env = remotecommand.container_environ(pid)
        return await upgrade.serve(
            request,
            protocol,
            lambda session: remotecommand.serve(session, options, argv, env),
            self._sessions,
        )

    async def _attach(self, request: web.Request) -> web.StreamResponse:
        """Refused, but over the upgraded connection: kubectl shows a status, not a 501."""
        try:
            self._pod(request)
            options = remotecommand.exec_options(request.query, [])
            protocol = upgrade.negotiate(request, remotecommand.PROTOCOLS)
        except ValueError as error:
            return web.Response(status=400, text=str(error))
        except upgrade.UpgradeError as error:
            return error.response()
        return await upgrade.serve(
            request, protocol, lambda session: remotecommand.refuse(session, options, NOT_SERVED)
        )

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["pod"]
        try:
            pod = self._pod(request)
            protocol = upgrade.negotiate(request, portforward.PROTOCOLS)
        except upgrade.UpgradeError as error:
            return error.response()
        return await upgrade.serve(
            request,
            protocol,
            lambda session: portforward.serve(session, name, pod.pod_ip),
            self._sessions,
        )

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        namespace, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.find(namespace, name)
        try:
            if pod is None:
                raise LogError(404, f'pod "{name}" does not exist')
            source = locate(name, pod, container, previous=_true(request.query, "previous"))
            options = options_of(dict(request.query), datetime.now(UTC))
        except LogError as error:
            return web.Response(status=error.status, text=str(error))
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await stream(source, options, response, follow=_true(request.query, "follow"))
        await response.write_eof()
        return response


class Sink(Protocol):
    """Where log bytes go (a chunked response)."""

    async def write(self, data: bytes) -> None:
        """Send them."""
        ...


async def stream(source: LogSource, options: LogOptions, sink: Sink, *, follow: bool) -> None:
    """Send the instance's log as the options say; with `follow`, go on until the instance
    ends (its last bytes included) or `limitBytes` is reached."""
    offset = sent = 0
    first = True
    while True:
        live = source.live()  # before reading: what it wrote before it ended is read below
        try:
            with source.path.open("rb") as log:  # only what is new since the last read
                log.seek(offset)
                data = log.read()
        except FileNotFoundError:
            return
        shape = options if first else LogOptions(options.timestamps, since=options.since)
        out, used = select(data, shape)
        offset, first = offset + used, False
        out = limited(out, sent, options.limit_bytes)
        if out:
            await sink.write(out)
            sent += len(out)
        if not follow or not live:
            return
        if options.limit_bytes is not None and sent >= options.limit_bytes:
            return
        await asyncio.sleep(FOLLOW_POLL)


API_SERVER_CLIENT = "kube-apiserver-kubelet-client"
ADMIN_GROUP = "system:masters"


def client_identity(peercert: dict[str, Any] | None) -> tuple[str, list[str]]:
    """The user (common name) and groups (organizations) of a verified client certificate."""
    names = [pair for rdn in (peercert or {}).get("subject", ()) for pair in rdn]
    user = next((value for key, value in names if key == "commonName"), "")
    return user, [value for key, value in names if key == "organizationName"]


def allowed(user: str, groups: list[str]) -> bool:
    """Who may use the kubelet API: the API server's kubelet client and cluster admins (a real
    kubelet asks the API server whether the user may use `nodes/proxy`; these two may)."""
    return user == API_SERVER_CLIENT or ADMIN_GROUP in groups


@web.middleware
async def _authorized(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    transport = request.transport
    user, groups = client_identity(transport.get_extra_info("peercert") if transport else None)
    if not allowed(user, groups):
        verb = "get" if request.method == "GET" else "create"
        return web.Response(
            status=403,
            text=f"Forbidden (user={user}, verb={verb}, resource=nodes, subresource=proxy)",
        )
    return await handler(request)
