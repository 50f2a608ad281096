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
from flywheel.artifacts import MOUNT_ROOT
from flywheel.podspec import RESTRICTED_CONTAINER, RESTRICTED_POD, owner_reference
from flywheel.settings import OperatorSettings

Obj = dict[str, Any]
PORT = 8080
SHUTDOWN_DELAY_SECONDS = 5
"""A stopping pod keeps answering this long (readiness already 503) while endpoints update."""
DRAIN_SECONDS = 20
"""Then in-flight requests may finish for this long."""
VERSION_ANNOTATION = f"{API_GROUP}/version"
"""On the Deployment and its pod template: the ModelVersion number the pods serve."""
MANAGED = {"app.kubernetes.io/managed-by": "flywheel", "app.kubernetes.io/component": "serving"}
MAX_NAME = 55
"""`<name>-serving` must stay a DNS-1035 label of at most 63 characters (Service names)."""


def child_name(name: str) -> str:
    """The name of the Deployment, Service and HPA of a ModelDeployment."""
    return f"{name}-serving"


def selector_labels(name: str) -> dict[str, str]:
    """The serving pods' selector (immutable for the Deployment's life)."""
    return {"app.kubernetes.io/name": "flywheel-serving", "app.kubernetes.io/instance": name}


def selector_string(name: str) -> str:
    """The selector as `kubectl` and the scale subresource print it."""
    return ",".join(f"{k}={v}" for k, v in sorted(selector_labels(name).items()))


def endpoint(name: str, namespace: str, model: str) -> str:
    """The in-cluster URL of the model's Open Inference Protocol v2 endpoint."""
    return f"http://{child_name(name)}.{namespace}.svc:{PORT}/v2/models/{model}"


def _labels(body: Obj, spec: ModelDeploymentSpec) -> dict[str, str]:
    name = body["metadata"]["name"]
    return {
        **MANAGED,
        **selector_labels(name),
        f"{API_GROUP}/modeldeployment": name,
        f"{API_GROUP}/model": spec.model,
    }


def _metadata(body: Obj, spec: ModelDeploymentSpec, **extra: Any) -> Obj:
    meta = body["metadata"]
    return {
        "name": child_name(meta["name"]),
        "namespace": meta["namespace"],
        "labels": _labels(body, spec),
        "ownerReferences": [owner_reference(body, "ModelDeployment")],
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


def _resources(spec: ModelDeploymentSpec, settings: OperatorSettings) -> Obj:
    if spec.resources is not None:
        return spec.resources.model_dump(by_alias=True, exclude_none=True, mode="json")
    return {
        "requests": {"cpu": settings.serving_cpu, "memory": settings.serving_memory},
        "limits": {"memory": settings.serving_memory},
    }


def render_deployment(
    body: Obj, spec: ModelDeploymentSpec, version: Obj, settings: OperatorSettings
) -> Obj:
    """The serving Deployment for one ModelVersion: rolling updates that never remove a ready
    pod before its replacement is ready; readiness means loaded, verified and warmed up."""
    number = str(version["spec"]["version"])
    annotations = {
        VERSION_ANNOTATION: number,
        f"{API_GROUP}/sha256": version["spec"]["artifact"]["sha256"],
    }
    pod_annotations = {
        **annotations,
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(PORT),
        "prometheus.io/path": "/metrics",
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
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": "/v2/health/ready", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 1,
            "timeoutSeconds": 2,
        },
        "livenessProbe": {
            "httpGet": {"path": "/v2/health/live", "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 5,
        },
        "resources": _resources(spec, settings),
        "securityContext": RESTRICTED_CONTAINER,
        "volumeMounts": [*mounts, {"name": "tmp", "mountPath": "/tmp"}],
    }
    deployment_spec: Obj = {
        "selector": {"matchLabels": selector_labels(body["metadata"]["name"])},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": spec.rollout.max_surge},
        },
        "progressDeadlineSeconds": spec.rollout.progress_deadline_seconds,
        "revisionHistoryLimit": 5,
        "template": {
            "metadata": {
                "labels": {**_labels(body, spec), f"{API_GROUP}/version": number},
                "annotations": pod_annotations,
            },
            "spec": {
                "serviceAccountName": settings.serving_service_account,
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": RESTRICTED_POD,
                "terminationGracePeriodSeconds": SHUTDOWN_DELAY_SECONDS + DRAIN_SECONDS + 5,
                "containers": [container],
                "volumes": [*volumes, {"name": "tmp", "emptyDir": {}}],
            },
        },
    }
    if spec.autoscaling is None:
        deployment_spec["replicas"] = spec.replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(body, spec, annotations=annotations),
        "spec": deployment_spec,
    }


def render_service(body: Obj, spec: ModelDeploymentSpec) -> Obj:
    """The Service in front of the ready serving pods (HTTP and /metrics on one port)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(body, spec),
        "spec": {
            "selector": selector_labels(body["metadata"]["name"]),
            "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_hpa(body: Obj, spec: ModelDeploymentSpec) -> Obj | None:
    """The CPU autoscaler of the serving Deployment, or None without `autoscaling`."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(body, spec),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(body["metadata"]["name"]),
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
    value = deployment.get("metadata", {}).get("annotations", {}).get(VERSION_ANNOTATION, "")
    return int(value) if str(value).isdigit() else None
