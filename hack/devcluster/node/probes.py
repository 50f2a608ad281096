"""Container probes (httpGet, tcpSocket, exec) with the kubelet's success rules."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

Obj = dict[str, Any]
Exec = Callable[[list[str], float], Awaitable[int]]
"""Runs a command inside the container with a timeout; its exit code."""

_INSECURE = ssl.create_default_context()
_INSECURE.check_hostname = False
_INSECURE.verify_mode = ssl.CERT_NONE


def resolve_port(port: int | str, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for item in container.get("ports", []):
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"container has no port named {port}")


async def probe(spec: Obj, container: Obj, pod_ip: str, run_exec: Exec) -> tuple[bool, str]:
    """One probe attempt: (success, a message for failures)."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "httpGet" in spec:
            return await _http(spec["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in spec:
            port = resolve_port(spec["tcpSocket"]["port"], container)
            host = spec["tcpSocket"].get("host") or pod_ip
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
            writer.close()
            return True, ""
        if "exec" in spec:
            code = await run_exec(spec["exec"]["command"], timeout)
            return code == 0, f"command exited with {code}"
    except (OSError, TimeoutError, ValueError, aiohttp.ClientError) as error:
        return False, f"{type(error).__name__}: {error}"
    return False, "unsupported probe handler (only httpGet, tcpSocket and exec are emulated)"


async def _http(spec: Obj, container: Obj, pod_ip: str, timeout: float) -> tuple[bool, str]:
    scheme = spec.get("scheme", "HTTP").lower()
    host = spec.get("host") or pod_ip
    url = f"{scheme}://{host}:{resolve_port(spec['port'], container)}{spec.get('path', '/')}"
    headers = {h["name"]: h["value"] for h in spec.get("httpHeaders", [])}
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
        session.get(url, headers=headers, ssl=_INSECURE, allow_redirects=False) as response,
    ):
        ok = 200 <= response.status < 400
        return ok, f"HTTP probe failed with statuscode: {response.status}"
