"""Plain HTTP to serving pods by IP: their readiness answers (why a rollout fails).

In a cluster the operator reaches pod IPs directly, as Prometheus does; the ModelDeployment
controller asks a pod that will not become ready for the model server's own reason (e.g.
`ArtifactDigestMismatch`), which no pod status carries.
"""

from __future__ import annotations

import aiohttp

TIMEOUT = aiohttp.ClientTimeout(total=2)


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
