"""Plain HTTP outside the Kubernetes API: serving pods by IP, and a Prometheus server.

In a cluster the operator reaches pod IPs directly, as Prometheus does. The ModelDeployment
controller asks a pod that will not become ready for the model server's own reason (e.g.
`ArtifactDigestMismatch`), which no pod status carries; the ModelMonitor scrapes `/metrics`,
reads the baseline a pod bins on, or runs PromQL instant queries.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=2)
SCRAPE_TIMEOUT = aiohttp.ClientTimeout(total=10)
Sample = tuple[dict[str, str], float]


class HttpFailure(Exception):
    """An answer that is missing, not 200, or not what was asked for; the message says which."""


async def get_text(url: str) -> str | None:
    """The body of a GET (any status), or None when the pod does not answer."""
    try:
        async with (
            aiohttp.ClientSession(timeout=TIMEOUT) as session,
            session.get(url) as response,
        ):
            return await response.text()
    except (aiohttp.ClientError, TimeoutError, OSError):
        return None


async def get_ok(url: str, params: dict[str, str] | None = None) -> str:
    """The body of a GET answered 200; :class:`HttpFailure` otherwise."""
    try:
        async with (
            aiohttp.ClientSession(timeout=SCRAPE_TIMEOUT) as session,
            session.get(url, params=params) as response,
        ):
            text = await response.text()
            if response.status != 200:
                raise HttpFailure(f"GET {url} answered {response.status}: {text[:200]}")
            return text
    except (aiohttp.ClientError, TimeoutError, OSError) as error:
        raise HttpFailure(f"GET {url} failed: {type(error).__name__} {error}") from error


async def prometheus_vector(base_url: str, query: str) -> list[Sample]:
    """An instant query's vector: (labels, value) per series."""
    text = await get_ok(base_url.rstrip("/") + "/api/v1/query", {"query": query})
    try:
        answer: dict[str, Any] = json.loads(text)
        data = answer["data"]
        if answer.get("status") != "success" or data["resultType"] != "vector":
            raise HttpFailure(f"Prometheus did not answer a vector: {text[:200]}")
        return [(dict(item["metric"]), float(item["value"][1])) for item in data["result"]]
    except (ValueError, KeyError, TypeError) as error:
        raise HttpFailure(f"Prometheus answered something else: {text[:200]}") from error


class PodHttpClient:
    """The functions above as the :class:`~flywheel.runtime.controller.PodHttp` the
    controllers are given (a fake in unit tests)."""

    async def get_text(self, url: str) -> str | None:
        """See :func:`get_text`."""
        return await get_text(url)

    async def get_ok(self, url: str, params: dict[str, str] | None = None) -> str:
        """See :func:`get_ok`."""
        return await get_ok(url, params)

    async def prometheus_vector(self, base_url: str, query: str) -> list[Sample]:
        """See :func:`prometheus_vector`."""
        return await prometheus_vector(base_url, query)
