"""Pure builders of a ModelDeployment's children: the serving Deployment, Service and HPA.

Names are deterministic (`<deployment>-serving` for all three), every child carries a controller
owner reference (garbage collection removes it with its ModelDeployment) and the labels the
operator watches. The objects are *apply configurations*: exactly the fields the operator owns,
written by server-side apply under one field manager, so labels or annotations that other
controllers or people add are left alone. With `autoscaling`, `replicas` is left out of the
Deployment: the HPA owns it.
"""

from __future__ import annotations

from typing import Any

from flywheel.api.common import API_GROUP
from flywheel.api.modeldeployment import ModelDeploymentSpec
from flywheel.core.objects import Obj, annotations_of
from flywheel.core.podspec import (
    MANAGED_BY,
    RESTRICTED_CONTAINER,
    RESTRICTED_POD,
    container_resources,
    owner_reference,
)
from flywheel.core.serving import VERSION_LABEL, child_name, selector_labels
from flywheel.core.target import Meta
from flywheel.interfaces.jobs import MOUNT_ROOT
from flywheel.settings import OperatorSettings
from flywheel_serving.names import GRPC_PORT, LIVE_PATH, METRICS_PATH, PORT, READY_PATH

SHUTDOWN_DELAY_SECONDS = 5
"""A stopping pod keeps answering this long (readiness already 503) while endpoints update."""
DRAIN_SECONDS = 20
"""Then in-flight requests may finish for this long."""
VERSION_ANNOTATION = VERSION_LABEL
"""On the Deployment and its pod template: the ModelVersion number the pods serve."""
MANAGED = {**MANAGED_BY, "app.kubernetes.io/component": "serving"}
REVISION_LABEL = "pod-template-hash"
"""The label the Deployment controller gives the pods of each revision (ReplicaSet)."""


def endpoint(name: str, namespace: str, model: str) -> str:
    """The in-cluster URL of the model's Open Inference Protocol v2 endpoint."""
    return f"http://{child_name(name)}.{namespace}.svc:{PORT}/v2/models/{model}"


def _labels(meta: Meta, spec: ModelDeploymentSpec) -> dict[str, str]:
    name = meta.name
    return {
        **MANAGED,
        **selector_labels(name),
        f"{API_GROUP}/modeldeployment": name,
        f"{API_GROUP}/model": spec.model,
    }


def _metadata(meta: Meta, spec: ModelDeploymentSpec, **extra: Any) -> Obj:
    return {
        "name": child_name(meta.name),
        "namespace": meta.namespace,
        "labels": _labels(meta, spec),
        "ownerReferences": [owner_reference("ModelDeployment", meta.name, meta.uid)],
        **extra,
    }


def claims_of(*uris: str) -> list[str]:
    """The artifact claims that `pvc://` URIs live on, in order, once each."""
    claims = [u.removeprefix("pvc://").split("/", 1)[0] for u in uris if u.startswith("pvc://")]
    return list(dict.fromkeys(claims))


def server_args(spec: ModelDeploymentSpec, version: Obj) -> list[str]:
    """The model server's flags for one ModelVersion (docs/serving.md lists them)."""
    mv = version["spec"]
    options = spec.serving
    args = [
        f"--model-uri={mv['artifact']['uri']}",
        f"--sha256={mv['artifact']['sha256']}",
        f"--model-name={spec.model}",
        f"--model-version={mv['version']}",
        f"--stats-uri={mv['baseline']['statsURI']}",
        f"--port={PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--artifacts-root={MOUNT_ROOT}",
        f"--log-level={options.log_level}",
        f"--shutdown-delay-seconds={SHUTDOWN_DELAY_SECONDS}",
        f"--drain-seconds={DRAIN_SECONDS}",
    ]
    if options.max_batch_size > 1:
        args += [
            f"--max-batch-size={options.max_batch_size}",
            f"--max-latency-ms={options.max_batch_latency_ms}",
        ]
    if not options.monitoring:
        args.append("--no-monitoring")
    return args


def topology_spread(name: str, spec: ModelDeploymentSpec) -> list[Obj]:
    """The serving pods' topology spread constraints, as the spec gives them (none when it gives
    none: the scheduler's cluster-wide defaults then apply). Each counts the serving pods of this
    ModelDeployment of the pod's own revision (`pod-template-hash`), as the Kubernetes docs
    advise for Deployments: during a rollout the new pods spread among themselves, not around
    the old ones they replace."""
    rendered = []
    for constraint in spec.topology_spread_constraints or ():
        item: Obj = {
            "topologyKey": constraint.topology_key,
            "maxSkew": constraint.max_skew,
            "whenUnsatisfiable": constraint.when_unsatisfiable,
            "labelSelector": {"matchLabels": selector_labels(name)},
            "matchLabelKeys": [REVISION_LABEL],
        }
        if constraint.min_domains is not None:
            item["minDomains"] = constraint.min_domains
        rendered.append(item)
    return rendered


def render_deployment(
    meta: Meta, spec: ModelDeploymentSpec, version: Obj, settings: OperatorSettings
) -> Obj:
    """The serving Deployment for one ModelVersion: rolling updates that never remove a ready
    pod before its replacement is ready; readiness means loaded, verified and warmed up."""
    number = str(version["spec"]["version"])
    notes = {
        VERSION_ANNOTATION: number,
        f"{API_GROUP}/sha256": version["spec"]["artifact"]["sha256"],
    }
    pod_annotations = {
        **notes,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": METRICS_PATH,
    }
    mv = version["spec"]
    claims = claims_of(mv["artifact"]["uri"], mv["baseline"]["statsURI"])
    mounts = [
        {"name": f"artifacts-{i}", "mountPath": f"{MOUNT_ROOT}/{claim}", "readOnly": True}
        for i, claim in enumerate(claims)
    ]
    volumes = [
        {"name": f"artifacts-{i}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
        for i, claim in enumerate(claims)
    ]
    container = {
        "name": "server",
        "image": settings.serving_image,
        "args": server_args(spec, version),
        "env": [{"name": "HOME", "value": "/tmp"}, {"name": "OMP_NUM_THREADS", "value": "1"}],
        "ports": [
            {"name": "http", "containerPort": PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
        ],
        "readinessProbe": {
            "httpGet": {"path": READY_PATH, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "resources": container_resources(
            spec.resources, settings.serving_cpu, settings.serving_memory
        ),
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: Obj = {
        "serviceAccountName": settings.serving_service_account,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": RESTRICTED_POD,
        "terminationGracePeriodSeconds": SHUTDOWN_DELAY_SECONDS + DRAIN_SECONDS + 5,
        "containers": [container],
        "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
    }
    if spread := topology_spread(meta.name, spec):
        # Never `[]`: the API server stores that as no field, which would never look applied.
        pod_spec["topologySpreadConstraints"] = spread
    deployment_spec: Obj = {
        "selector": {"matchLabels": selector_labels(meta.name)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": spec.rollout.max_surge},
        },
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {
                "labels": {**_labels(meta, spec), VERSION_LABEL: number},
                "annotations": pod_annotations,
            },
            "spec": pod_spec,
        },
    }
    if spec.autoscaling is None:
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(meta, spec, annotations=notes),
        "spec": deployment_spec,
    }


def render_service(meta: Meta, spec: ModelDeploymentSpec) -> Obj:
    """The Service in front of the ready serving pods: REST and /metrics on `http`, the gRPC
    Open Inference Protocol on `grpc` (`appProtocol: grpc`, so meshes and gateways speak HTTP/2)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(meta, spec),
        "spec": {
            "selector": selector_labels(meta.name),
            "ports": [
                {"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"},
                {
                    "name": "grpc",
                    "port": GRPC_PORT,
                    "targetPort": "grpc",
                    "protocol": "TCP",
                    "appProtocol": "grpc",
                },
            ],
        },
    }


def render_hpa(meta: Meta, spec: ModelDeploymentSpec) -> Obj | None:
    """The CPU autoscaler of the serving Deployment, or None without `autoscaling`."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(meta, spec),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(meta.name),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization_percentage,
                        },
                    },
                }
            ],
        },
    }


def rendered_version(deployment: Obj | None) -> int | None:
    """The ModelVersion number an existing serving Deployment's pods are rendered for."""
    if deployment is None:
        return None
    value = annotations_of(deployment).get(VERSION_ANNOTATION, "")
    return int(value) if str(value).isdigit() else None
