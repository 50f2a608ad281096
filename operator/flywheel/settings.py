"""Operator settings, read once at start-up from `FLYWHEEL_*` environment variables.

The settings object is built in :mod:`flywheel.__main__` and handed to the handlers through
kopf's memo; nothing reads the environment anywhere else.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flywheel.api.common import Quantity


class OperatorSettings(BaseSettings):
    """How the operator runs. Every field can be set as `FLYWHEEL_<NAME>` (upper case)."""

    model_config = SettingsConfigDict(
        env_prefix="FLYWHEEL_", use_attribute_docstrings=True, extra="ignore", frozen=True
    )

    namespaces: list[str] = Field(default_factory=list)
    """Namespaces to watch, as a JSON list (`["ml", "ml-staging"]`). Empty: the whole cluster."""

    liveness_port: int = Field(default=8080, ge=0, le=65535)
    """Port of kopf's liveness endpoint `/healthz` (0 turns it off)."""

    metrics_port: int = Field(default=8081, ge=0, le=65535)
    """Port of the operator's Prometheus `/metrics` (0 turns it off)."""

    bind_address: str = "0.0.0.0"
    """Address the liveness and metrics endpoints listen on."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    """The operator's log level."""

    job_image: str = "ghcr.io/flywheel-dev/flywheel-operator:0.1.0"
    """Image of the ingest and training Jobs (the operator image)."""

    serving_image: str = "ghcr.io/flywheel-dev/flywheel-serving:0.1.0"
    """Image of the serving pods."""

    artifacts_claim: str = "flywheel-artifacts"
    """The PersistentVolumeClaim holding datasets, statistics and models in each namespace."""

    artifacts_size: str = "10Gi"
    """Requested size of an artifacts claim the operator creates."""

    artifacts_storage_class: str | None = None
    """Storage class of created artifacts claims (default: the cluster's default class).
    Multi-node clusters need a ReadWriteMany class."""

    artifacts_access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = "ReadWriteOnce"
    """Access mode of created artifacts claims."""

    dataset_max_bytes: Quantity = "10Gi"
    """The largest Dataset source accepted when its `source.maxBytes` is not set."""

    ingest_deadline_seconds: int = Field(default=900, ge=30)
    """activeDeadlineSeconds of ingest Jobs."""

    job_cpu: str = "500m"
    """CPU request of Job containers."""

    job_memory: str = "1Gi"
    """Memory request (and limit) of Job containers."""

    serving_cpu: str = "250m"
    """Default CPU request of serving containers (a ModelDeployment's `resources` wins)."""

    serving_memory: str = "512Mi"
    """Default memory request (and limit) of serving containers."""

    job_service_account: str = "flywheel-job"
    """The ServiceAccount of ingest and training pods in each namespace (created by the operator
    when absent, with no API permissions and no token mounted)."""

    serving_service_account: str = "flywheel-serving"
    """The ServiceAccount of serving pods in each namespace (created like the Jobs' one)."""

    protection_finalizers: bool = True
    """Protect served ModelVersions (`flywheel.dev/in-use`) and artifacts claims in use
    (`flywheel.dev/artifacts-protection`) with finalizers. The chart turns it off when the
    operator's permissions are Roles in the watched namespaces: deleting such a namespace may
    delete the Role first, and a finalizer the operator can no longer remove would keep the
    namespace Terminating for ever."""

    workers: int = Field(default=4, ge=1, le=64)
    """Reconciles of each kind that run at once (one object is never reconciled twice at
    once)."""

    failpoint: Literal["", "exit-after-model-version-created"] = ""
    """Testing only: stop the process abruptly (exit code 17) at a named point, to prove that
    the operator recovers from a crash there (like etcd's failpoints). Empty in production."""

    @property
    def clusterwide(self) -> bool:
        """Whether the operator watches every namespace."""
        return not self.namespaces
