"""Reading Jobs the operator created: whether they are done, how many pods they started, and
the result their pod reported through its termination message (or, when it reported none, why:
a container the kernel killed for exceeding its memory limit says `OOMKilled`)."""

from __future__ import annotations

from flywheel.core.conditions import raw_condition
from flywheel.core.objects import Obj, meta_of, status_of
from flywheel.interfaces.jobs import FailureReason, JobFailure, ReportT, decode_result


def job_condition(job: Obj | None, type_: str) -> Obj:
    """The Job's condition of this type when it is True, else an empty dict."""
    condition = raw_condition(status_of(job), type_)
    return condition if condition.get("status") == "True" else {}


def job_finished(job: Obj | None) -> str | None:
    """`Complete` or `Failed` once the Job is done, else None."""
    return next((t for t in ("Complete", "Failed") if job_condition(job, t)), None)


def pods_started(job: Obj | None) -> int:
    """How many pods the Job has started so far (running, failed or succeeded)."""
    status = status_of(job)
    return sum(int(status.get(key) or 0) for key in ("active", "failed", "succeeded"))


def read_result(job: Obj | None, pods: list[Obj], report: type[ReportT]) -> ReportT | JobFailure:
    """The result from the newest termination message of a pod the Job itself created (its
    controller owner reference is the Job's uid: a pod someone made with the Job's label
    reports nothing), or why there is none."""
    uid = meta_of(job).get("uid")
    mine = [p for p in pods if uid is None or _created_by(p, str(uid))]
    newest = sorted(mine, key=lambda p: p["metadata"].get("creationTimestamp", ""), reverse=True)
    for pod in newest:
        for container in status_of(pod).get("containerStatuses") or ():
            terminated = (container.get("state") or {}).get("terminated")
            if not terminated:
                continue
            text = terminated.get("message") or ""
            result = decode_result(text, report)
            if result is None:
                message = text or terminated.get("reason") or "no output"
                if terminated.get("reason") == "OOMKilled":
                    message = _oom_killed(pod, container, terminated, text)
                return JobFailure(reason=FailureReason.NO_RESULT, message=message[-1000:])
            return result
    reasons = [c.get("reason", "") for c in status_of(job).get("conditions") or ()]
    message = f"the Job ended without a result ({', '.join(r for r in reasons if r)})"
    return JobFailure(reason=FailureReason.NO_RESULT, message=message)


def _oom_killed(pod: Obj, container: Obj, terminated: Obj, output: str) -> str:
    """What an OOM-killed container reports: its memory limit first, then its last output."""
    name = container.get("name", "")
    containers = (pod.get("spec") or {}).get("containers") or ()
    spec: Obj = next((c for c in containers if c.get("name") == name), {})
    limit = ((spec.get("resources") or {}).get("limits") or {}).get("memory")
    message = (
        f"OOMKilled: container {name} used more than its memory limit"
        f"{f' ({limit})' if limit else ''} and was killed "
        f"(exit code {terminated.get('exitCode', 137)})"
    )
    return f"{message}; last output: {output[-600:]}" if output else message


def _created_by(pod: Obj, uid: str) -> bool:
    return any(
        o.get("uid") == uid and o.get("controller") and o.get("kind") == "Job"
        for o in meta_of(pod).get("ownerReferences") or ()
    )
