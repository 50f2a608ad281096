"""Pure builders of what the Dataset controller creates: the ingest Job, named per trigger."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from flywheel.api.checks import parse_quantity
from flywheel.api.common import API_GROUP
from flywheel.api.dataset import DatasetSpec, IngestTrigger
from flywheel.core.objects import Obj
from flywheel.core.podspec import (
    MANAGED_BY,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    artifact_mounts,
    artifact_volumes,
    container_resources,
    owner_reference,
)
from flywheel.core.target import Meta
from flywheel.interfaces.jobs import MOUNT_ROOT, IngestArgs
from flywheel.settings import OperatorSettings


@dataclass(frozen=True)
class IngestPlan:
    """A decision to ingest: why, and the tick that makes the Job name deterministic."""

    trigger: IngestTrigger
    tick: str


def job_name(dataset: str, plan: IngestPlan) -> str:
    """A deterministic, DNS-safe Job name per (dataset, trigger tick)."""
    digest = hashlib.sha256(f"{dataset}/{plan.tick}".encode()).hexdigest()[:8]
    return f"{dataset[:45]}-ingest-{digest}"


def ingest_labels(dataset: str) -> dict[str, str]:
    """Labels of everything the Dataset controller creates."""
    return {
        **MANAGED_BY,
        "app.kubernetes.io/component": "ingest",
        f"{API_GROUP}/dataset": dataset,
    }


def source_limit(spec: DatasetSpec, settings: OperatorSettings) -> int:
    """The largest source the ingest Job accepts, in bytes: `source.maxBytes`, else the
    operator's default (both checked as quantities at admission and at start-up)."""
    limit = parse_quantity(spec.source.max_bytes or settings.dataset_max_bytes)
    return int(limit) if limit is not None else 0


def render_ingest_job(
    meta: Meta,
    spec: DatasetSpec,
    plan: IngestPlan,
    previous_digest: str | None,
    settings: OperatorSettings,
) -> Obj:
    """The ingest Job for a plan: no retries (the controller retries an unavailable source
    itself, with back-off), no API access, restricted, the artifacts claim mounted."""
    claim = settings.artifacts_claim
    args = IngestArgs(
        spec=spec,
        namespace=meta.namespace,
        name=meta.name,
        claim=claim,
        max_bytes=source_limit(spec, settings),
        previous_digest=previous_digest or None,
    )
    tags = {**ingest_labels(meta.name), f"{API_GROUP}/trigger": plan.trigger.lower()}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(meta.name, plan),
            "namespace": meta.namespace,
            "labels": tags,
            "ownerReferences": [owner_reference("Dataset", meta.name, meta.uid)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.ingest_deadline_seconds,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": tags},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": settings.job_service_account,
                    "automountServiceAccountToken": False,  # the Job needs no API access
                    "securityContext": RESTRICTED_POD,
                    "containers": [
                        {
                            "name": "ingest",
                            "image": settings.job_image,
                            "command": args.command(),
                            "env": [{"name": "HOME", "value": "/tmp"}],
                            "resources": container_resources(
                                None, settings.job_cpu, settings.job_memory
                            ),
                            "securityContext": RESTRICTED_CONTAINER,
                            "terminationMessagePolicy": "FallbackToLogsOnError",
                            "volumeMounts": artifact_mounts(claim, str(MOUNT_ROOT)),
                        }
                    ],
                    "volumes": artifact_volumes(claim),
                },
            },
        },
    }
