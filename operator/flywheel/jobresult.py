"""Reading finished Jobs: whether they are done, what their pod reported, what that means.

Ingest and training Jobs report one JSON document through the container's termination message
(compressed as `{"z": base64(zlib(json))}` when it would not fit in 4 KiB). Controllers turn a
result into an :class:`Outcome`: the status fields, condition updates and Event to post.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

from flywheel.conditions import ConditionUpdate, raw_condition

Obj = dict[str, Any]


def job_condition(job: Obj, type_: str) -> Obj:
    """The Job's condition of this type when it is True, else an empty dict."""
    condition = raw_condition(job.get("status"), type_)
    return condition if condition.get("status") == "True" else {}


def job_finished(job: Obj) -> str | None:
    """`Complete` or `Failed` once the Job is done, else None."""
    return next((t for t in ("Complete", "Failed") if job_condition(job, t)), None)


def pods_started(job: Obj) -> int:
    """How many pods the Job has started so far (running, failed or succeeded)."""
    status = job.get("status", {})
    return sum(int(status.get(key) or 0) for key in ("active", "failed", "succeeded"))


def decode_message(text: str) -> Obj | None:
    """A termination message as a result document, or None when it is not one (a log tail)."""
    try:
        result = json.loads(text)
        if isinstance(result, dict) and set(result) == {"z"}:
            result = json.loads(zlib.decompress(base64.b64decode(result["z"])))
    except (json.JSONDecodeError, binascii.Error, zlib.error, TypeError):
        return None
    return result if isinstance(result, dict) else None


def read_result(job: Obj, pods: list[Obj]) -> Obj:
    """The result from the newest pod's termination message (or why there is none)."""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True):
        for container in pod.get("status", {}).get("containerStatuses", []):
            terminated = container.get("state", {}).get("terminated")
            if not terminated:
                continue
            text = terminated.get("message", "")
            result = decode_message(text)
            if result is None:
                message = text or terminated.get("reason") or "no output"
                return {"ok": False, "reason": "Failed", "message": message[-1000:]}
            return result
    reasons = [c.get("reason", "") for c in job.get("status", {}).get("conditions", [])]
    return {
        "ok": False,
        "reason": "Failed",
        "message": f"the Job ended without a result ({', '.join(r for r in reasons if r)})",
    }


@dataclass(frozen=True)
class Outcome:
    """What a controller step decided: status fields, conditions, and an Event (if any)."""

    status: Obj
    conditions: list[ConditionUpdate]
    event_type: str = "Normal"
    event_reason: str = ""
    event_message: str = ""
