"""The API server's own record of the operator's requests: an audit log of one user.

The benchmark runs the operator under a ServiceAccount of its own and has the API server audit
exactly that user (level Metadata, one line per finished request). Counting there is fair to
any operator: kopf's own writes and the controllers' are counted alike, with the server's
timestamps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

SYSTEM = "flywheel-bench-system"
ACCOUNT = "operator"
USER = f"system:serviceaccount:{SYSTEM}:{ACCOUNT}"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
POLICY = f"""\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["{USER}"]
  - level: None
"""


def apiserver_args(directory: Path) -> tuple[str, ...]:
    """kube-apiserver flags that audit the operator's user into `directory/audit.log`."""
    directory.mkdir(parents=True, exist_ok=True)
    policy = directory / "audit-policy.yaml"
    policy.write_text(POLICY)
    return (
        f"--audit-policy-file={policy}",
        f"--audit-log-path={directory / 'audit.log'}",
        "--audit-log-maxsize=2048",
        "--audit-log-format=json",
    )


@dataclass(frozen=True)
class Request:
    """One finished request of the operator."""

    received: float
    verb: str
    resource: str
    subresource: str
    namespace: str
    name: str
    code: int

    @property
    def write(self) -> bool:
        """Whether it changed something."""
        return self.verb in WRITES


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read(log: Path) -> list[Request]:
    """Every finished request in the log (a watch counts when it ends or is cut)."""
    return list(_parse(log.read_text().splitlines() if log.exists() else []))


def _parse(lines: Iterable[str]) -> Iterator[Request]:
    for line in lines:
        event = json.loads(line)
        if event.get("stage") not in ("ResponseComplete", "Panic"):
            continue
        ref = event.get("objectRef") or {}
        yield Request(
            received=_time(event["requestReceivedTimestamp"]),
            verb=str(event.get("verb", "")),
            resource=str(ref.get("resource", "")),
            subresource=str(ref.get("subresource", "")),
            namespace=str(ref.get("namespace", "")),
            name=str(ref.get("name", "")),
            code=int((event.get("responseStatus") or {}).get("code") or 0),
        )


def between(requests: list[Request], start: float, end: float) -> list[Request]:
    """The requests received in [start, end)."""
    return [r for r in requests if start <= r.received < end]


def breakdown(requests: list[Request]) -> str:
    """`verb resource[/sub]: count` for the most frequent kinds of request."""
    counts = Counter(
        f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}" for r in requests
    )
    return ", ".join(f"{k}: {v}" for k, v in counts.most_common(6)) or "none"


def writes_until(
    requests: list[Request], namespace: str, owner: str, job: str, created: float
) -> int:
    """The operator's writes about one object up to the moment its Job was created: on the
    object itself (any subresource), on its Job, and Events about it."""
    count = 0
    for r in requests:
        if not r.write or r.namespace != namespace or r.received > created:
            continue
        about = r.name in (owner, job) or (r.resource == "events" and r.name.startswith(owner))
        count += about
    return count
