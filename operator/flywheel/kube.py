"""The operator's only Kubernetes I/O: a small asyncio JSON client over aiohttp.

Credentials come from kopf's own login helpers (the pod's service account, else KUBECONFIG), so
the operator and kopf talk to the same server as the same user. Calls return plain dicts; pure
builders in :mod:`flywheel.render` produce the bodies. 404 and 409 surface as :class:`NotFound`
and :class:`Conflict` so callers can make create-or-get and delete idempotent.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import kopf

Obj = dict[str, Any]
FIELD_MANAGER = "flywheel"
"""The field manager of everything the operator applies."""


class ApiError(Exception):
    """A non-2xx answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message[:600]}")
        self.status = status
        self.body = message

    @property
    def reason_message(self) -> str:
        """The API server's own sentence (the Status object's `message`), else the body."""
        try:
            found = json.loads(self.body).get("message")
        except (ValueError, AttributeError):
            found = None
        return str(found or self.body)[:1000]


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409: already exists, or a resourceVersion conflict."""


def _context(info: kopf.ConnectionInfo) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    context = ssl.create_default_context(
        cafile=str(info.ca_path) if info.ca_path else None,
        cadata=_text(info.ca_data) if info.ca_data else None,
    )
    cert, key = info.certificate_path, info.private_key_path
    if info.certificate_data and info.private_key_data:
        with tempfile.TemporaryDirectory() as scratch:
            cert_file, key_file = Path(scratch) / "tls.crt", Path(scratch) / "tls.key"
            cert_file.write_text(_text(info.certificate_data))
            key_file.write_text(_text(info.private_key_data))
            context.load_cert_chain(cert_file, key_file)
    elif cert and key:
        context.load_cert_chain(str(cert), str(key))
    return context


def _text(data: str | bytes) -> str:
    """kopf passes base64 kubeconfig data decoded or not; PEM text either way."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.lstrip().startswith(b"-----"):
        return raw.decode()
    return base64.b64decode(raw).decode()


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def in_cluster(settings: kopf.OperatorSettings) -> kopf.ConnectionInfo | None:
    """The pod's credentials, as client-go's InClusterConfig reads them: the API server at
    `KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT` and the service-account token and CA.

    kopf's own `login_with_service_account` connects to `kubernetes.default.svc`, which needs
    cluster DNS; the environment variables do not (and are what every client-go controller uses).
    """
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


class Kube:
    """An open connection to the API server."""

    def __init__(self, info: kopf.ConnectionInfo) -> None:
        self.server = info.server.rstrip("/")
        headers = {"Accept": "application/json"}
        if info.token:
            headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
        self._session = aiohttp.ClientSession(
            headers=headers,
            connector=aiohttp.TCPConnector(ssl=_context(info), limit=32),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    @classmethod
    def login(cls) -> Kube:
        """Connect with the pod's service account, else the current kubeconfig context."""
        settings = kopf.OperatorSettings()
        info = in_cluster(settings) or kopf.login_with_kubeconfig(settings=settings)
        if info is None:
            raise RuntimeError("no Kubernetes credentials: neither in a pod nor a KUBECONFIG")
        return cls(info)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._session.close()

    async def request(self, method: str, path: str, body: Any = None, *, patch: str = "") -> Obj:
        """One call; the decoded answer."""
        content_type = {
            "": "application/json",
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "apply": "application/apply-patch+yaml",  # JSON is YAML
        }[patch]
        data = None if body is None else json.dumps(body)
        async with self._session.request(
            method, self.server + path, data=data, headers={"Content-Type": content_type}
        ) as response:
            text = await response.text()
            if response.status == 404:
                raise NotFound(404, text)
            if response.status == 409:
                raise Conflict(409, text)
            if response.status >= 300:
                raise ApiError(response.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str) -> Obj:
        """GET."""
        return await self.request("GET", path)

    async def get_or_none(self, path: str) -> Obj | None:
        """GET; None when absent."""
        try:
            return await self.get(path)
        except NotFound:
            return None

    async def create(self, path: str, body: Obj) -> Obj:
        """POST to a collection."""
        return await self.request("POST", path, body)

    async def create_or_get(self, collection: str, body: Obj) -> tuple[Obj, bool]:
        """Create, or return the existing object of the same name: (object, created)."""
        try:
            return await self.create(collection, body), True
        except Conflict:
            return await self.get(f"{collection}/{body['metadata']['name']}"), False

    async def apply(self, path: str, body: Obj, manager: str = FIELD_MANAGER) -> Obj:
        """Server-side apply of `body` (an apply configuration: only the fields we own) to the
        object at `path`, creating it if absent. `force` takes fields back from whoever
        changed them by hand; fields others added stay theirs."""
        query = f"?fieldManager={quote(manager, safe='')}&force=true"
        return await self.request("PATCH", path + query, body, patch="apply")

    async def delete(self, path: str) -> bool:
        """DELETE; False when it was already gone."""
        try:
            await self.request("DELETE", path)
        except NotFound:
            return False
        return True

    async def patch_status(self, path: str, status: Obj) -> Obj:
        """Merge-patch the status subresource."""
        return await self.request("PATCH", f"{path}/status", {"status": status}, patch="merge")


def namespaced(api: str, namespace: str, plural: str, name: str = "") -> str:
    """`/api/v1/namespaces/ns/pods[/name]` or `/apis/<group>/<v>/namespaces/...`."""
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")
