"""The real kstatus library's verdict on Kubernetes objects, for the tests.

`kstatus` is a small Go CLI (hack/kstatus) around `status.Compute` from
sigs.k8s.io/cli-utils/pkg/kstatus/status, the library Flux, kpt and `cli-utils`' appliers use to
decide whether an object is InProgress, Current, Failed or Terminating. hack/build-k8s.sh builds
it from pinned Go modules (KSTATUS_VERSION in hack/versions.env) into the same bin dir as the
cluster binaries; `ensure_binaries()` builds whatever is missing, so a cache that lacks only
kstatus builds kstatus alone (seconds), and a cold machine builds everything (minutes).

    from tests.support.kstatus import kstatus, kstatus_of

    assert kstatus_of(kubectl_get_json("modeldeployment", "m")).status == "Current"
    [a, b] = kstatus([obj_a, obj_b])  # one run of the binary, answers in input order

Objects are plain dicts as `kubectl get -o json` prints them (integers must be JSON integers:
the library reads metadata.generation and status.observedGeneration as int64). A refusal of
the binary (bad input, a field of the wrong type) raises KStatusError with its message.
"""

from __future__ import annotations

import functools
import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

from devcluster.binaries import ensure_binaries

Status = Literal["InProgress", "Current", "Failed", "Terminating", "NotFound", "Unknown"]
STATUSES: frozenset[str] = frozenset(get_args(Status))
TIMEOUT_SECONDS = 60.0


class KStatusError(RuntimeError):
    """The kstatus binary refused the input, or answered something unexpected."""


@dataclass(frozen=True)
class KStatus:
    """The library's verdict on one object."""

    kind: str
    namespace: str
    name: str
    status: Status
    message: str


@functools.cache
def kstatus_binary() -> str:
    """The path of the kstatus binary, built first when it is missing (BuildError if not)."""
    return ensure_binaries().path("kstatus")


def run_kstatus(document: str) -> subprocess.CompletedProcess[str]:
    """Run the binary on a raw JSON document (for tests of the CLI itself); exit code unchecked."""
    return subprocess.run(
        [kstatus_binary()],
        input=document,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_SECONDS,
        check=False,
    )


def kstatus(objects: Sequence[Mapping[str, Any]]) -> list[KStatus]:
    """The verdicts on `objects`, in order, from one run of the binary."""
    if not objects:
        return []
    document = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    result = run_kstatus(document)
    if result.returncode != 0:
        raise KStatusError(result.stderr.strip() or f"kstatus exited {result.returncode}")
    answers = [_parse(line) for line in result.stdout.splitlines() if line.strip()]
    if len(answers) != len(objects):
        raise KStatusError(f"kstatus answered {len(answers)} lines for {len(objects)} objects")
    return answers


def kstatus_of(obj: Mapping[str, Any]) -> KStatus:
    """The verdict on one object."""
    return kstatus([obj])[0]


def _parse(line: str) -> KStatus:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as error:
        raise KStatusError(f"kstatus printed a line that is not JSON: {line!r}") from error
    if not isinstance(raw, dict):
        raise KStatusError(f"kstatus printed a line that is not an object: {line!r}")
    fields = {name: raw.get(name) for name in ("kind", "namespace", "name", "status", "message")}
    if not all(isinstance(value, str) for value in fields.values()):
        raise KStatusError(f"kstatus printed a line with missing or non-string fields: {line!r}")
    values = cast(dict[str, str], fields)
    if values["status"] not in STATUSES:
        raise KStatusError(f"kstatus printed an unknown status: {line!r}")
    return KStatus(
        kind=values["kind"],
        namespace=values["namespace"],
        name=values["name"],
        status=cast(Status, values["status"]),
        message=values["message"],
    )
