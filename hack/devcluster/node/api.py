"""A minimal asyncio Kubernetes client for the node agent (aiohttp, client certificates).

The agent needs a handful of calls: get, list, watch, create, patch, delete and the TokenRequest
subresource. A full client library would add a dependency the agent does not need; this one
speaks plain JSON over HTTPS with the credentials of a kubeconfig.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import yaml

Obj = dict[str, Any]


class ApiError(Exception):
    """A non-2xx answer from the API server."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status


class Api:
    """The API server at `server`, authenticated by a client certificate."""

    def __init__(self, server: str, context: ssl.SSLContext) -> None:
        self.server = server.rstrip("/")
        self._context = context
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_kubeconfig(cls, path: Path) -> Api:
        """Read server, CA and client certificate from a kubeconfig with embedded data."""
        config = yaml.safe_load(path.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        context = ssl.create_default_context(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
        with tempfile.TemporaryDirectory() as scratch:
            cert, key = Path(scratch) / "c.crt", Path(scratch) / "c.key"
            cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
            key.write_bytes(base64.b64decode(user["client-key-data"]))
            context.load_cert_chain(cert, key)
        return cls(cluster["server"], context)

    async def __aenter__(self) -> Api:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self._context, limit=32),
            read_bufsize=2**22,  # watch events arrive one per line; pods can be large
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        """The open HTTP session."""
        assert self._session is not None, "use `async with Api(...)`"
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float = 30,
    ) -> Obj:
        """One call; the decoded JSON answer."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(
            method,
            self.server + path,
            data=data,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            text = await response.text()
            if response.status >= 300:
                raise ApiError(response.status, text)
            return json.loads(text) if text else {}

    async def get(self, path: str, **params: str) -> Obj:
        """GET an object or a list."""
        return await self.request("GET", path, params=params or None)

    async def get_or_none(self, path: str) -> Obj | None:
        """GET an object; None when it does not exist."""
        try:
            return await self.get(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, path: str, body: Obj) -> Obj:
        """POST a new object (or a subresource such as a TokenRequest)."""
        return await self.request("POST", path, body=body)

    async def patch(self, path: str, body: Any, kind: str = "merge") -> Obj:
        """PATCH with a merge (default), strategic or JSON patch."""
        types = {
            "merge": "application/merge-patch+json",
            "strategic": "application/strategic-merge-patch+json",
            "json": "application/json-patch+json",
        }
        return await self.request("PATCH", path, body=body, content_type=types[kind])

    async def delete(self, path: str, body: Obj | None = None) -> Obj | None:
        """DELETE; None when already gone."""
        try:
            return await self.request("DELETE", path, body=body)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def watch(self, path: str, **params: str) -> AsyncIterator[Obj]:
        """Watch events from a resourceVersion until the server closes the stream."""
        query = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "300", **params}
        async with self.session.get(
            self.server + path,
            params=query,
            timeout=aiohttp.ClientTimeout(total=None, sock_read=330),
        ) as response:
            if response.status >= 300:
                raise ApiError(response.status, await response.text())
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
