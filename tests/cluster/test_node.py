"""Pods really run on the local node: Jobs, Deployments, probes, volumes, tokens, RBAC."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.kube import Kubectl, eventually, finished_pod

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment


def _job(name: str, code: str, *, backoff: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {"name": "main", "image": PYTHON, "command": ["python", "-c", code]}
                    ],
                }
            },
        },
    }


def _job_condition(k: Kubectl, name: str) -> dict[str, Any] | None:
    return _ended(k.json("get", "job", name))


def _ended(job: dict[str, Any]) -> dict[str, Any] | None:
    """The Job's Complete or Failed condition once it ended."""
    for condition in job.get("status", {}).get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return dict(condition)
    return None


def test_a_job_runs_to_completion_with_its_termination_message(k: Kubectl) -> None:
    code = "open('/dev/termination-log', 'w').write('trained 42 trees'); print('done')"
    k.apply(_job("ok", code))
    condition = eventually(lambda: _job_condition(k, "ok"), timeout=90, what="the Job to finish")
    assert condition["type"] == "Complete"
    (pod,) = k.json("get", "pods", "-l", "job-name=ok")["items"]
    assert pod["status"]["phase"] == "Succeeded"
    state = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert state["exitCode"] == 0
    assert state["reason"] == "Completed"
    assert state["message"] == "trained 42 trees"


def test_a_failing_job_is_retried_up_to_its_backoff_limit(k: Kubectl) -> None:
    k.apply(_job("broken", "import sys; print('boom', file=sys.stderr); sys.exit(3)", backoff=1))
    condition = eventually(lambda: _job_condition(k, "broken"), timeout=120, what="the Job to fail")
    assert condition["type"] == "Failed"
    assert condition["reason"] == "BackoffLimitExceeded"
    pods = k.json("get", "pods", "-l", "job-name=broken")["items"]
    assert len(pods) == 2, "one run plus one retry"
    for pod in pods:
        assert pod["status"]["phase"] == "Failed"
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 3
        assert terminated["reason"] == "Error"


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}
      containers:
      - name: http
        image: python:3.11
        command: [python, -m, http.server, "8080", --directory, /srv]
        ports: [{containerPort: 8080, name: http}]
        readinessProbe: {httpGet: {path: /ready, port: http}, periodSeconds: 1, failureThreshold: 1}
        securityContext:
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {drop: [ALL]}
        volumeMounts: [{name: www, mountPath: /srv}]
      initContainers:
      - name: content
        image: python:3.11
        command: [sh, -c, "echo ok > /srv/ready && echo $(MY_POD) > /srv/name"]
        env: [{name: MY_POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
        volumeMounts: [{name: www, mountPath: /srv}]
      volumes: [{name: www, emptyDir: {}}]
"""


def _ready_pods(k: Kubectl, selector: str) -> list[dict[str, Any]]:
    pods = k.json("get", "pods", "-l", selector)["items"]
    return [
        p
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_a_deployment_serves_from_distinct_pod_ips_and_scales(k: Kubectl) -> None:
    k.apply(DEPLOYMENT)
    k("rollout", "status", "deployment/web", "--timeout=90s")
    pods = _ready_pods(k, "app=web")
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2, "two replicas listen on the same port in their own namespaces"
    for pod in pods:
        name = _get(f"http://{pod['status']['podIP']}:8080/name").strip()
        assert name == pod["metadata"]["name"], "each pod serves its own init container's output"

    k("scale", "deployment/web", "--replicas=3")
    eventually(lambda: len(_ready_pods(k, "app=web")) == 3, timeout=90, what="3 ready pods")
    k("scale", "deployment/web", "--replicas=1")
    eventually(
        lambda: len(k.json("get", "pods", "-l", "app=web")["items"]) == 1,
        timeout=90,
        what="scale down to 1 pod",
    )

    (survivor,) = _ready_pods(k, "app=web")
    k("delete", "pod", survivor["metadata"]["name"], "--wait=true", "--timeout=60s")
    replacement = eventually(
        lambda: _ready_pods(k, "app=web"), timeout=90, what="a replacement pod"
    )
    assert replacement[0]["metadata"]["uid"] != survivor["metadata"]["uid"]


def test_a_failing_readiness_probe_keeps_the_pod_out_of_ready(k: Kubectl) -> None:
    manifest = yaml.safe_load(DEPLOYMENT)
    manifest["metadata"]["name"] = "unready"
    manifest["spec"]["replicas"] = 1
    template = manifest["spec"]["template"]
    template["metadata"]["labels"] = manifest["spec"]["selector"]["matchLabels"] = {
        "app": "unready"
    }
    template["spec"]["initContainers"][0]["command"] = [
        "sh",
        "-c",
        "echo nothing-ready > /srv/name",
    ]
    k.apply(manifest)

    def running() -> dict[str, Any] | None:
        pods = k.json("get", "pods", "-l", "app=unready")["items"]
        return pods[0] if pods and pods[0]["status"].get("phase") == "Running" else None

    pod = eventually(running, timeout=90, what="the pod to run")
    ip = pod["status"]["podIP"]

    def answer() -> str | None:  # Running is not yet listening: the server starts after it
        try:
            return _get(f"http://{ip}:8080/name").strip()
        except OSError:
            return None

    assert eventually(answer, timeout=30, what="the server") == "nothing-ready"  # it is up...
    pod = k.json("get", "pod", pod["metadata"]["name"])
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "False"  # ...but /ready answers 404
    assert pod["status"]["containerStatuses"][0]["ready"] is False


VOLUMES = """
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 1Gi}}}
---
apiVersion: v1
kind: Pod
metadata: {name: PODNAME}
spec:
  serviceAccountName: ACCOUNT
  restartPolicy: Never
  containers:
  - name: main
    image: python:3.11
    terminationMessagePolicy: FallbackToLogsOnError
    command: [python, -c]
    args:
    - |
      import json, os, ssl, urllib.error, urllib.request
      sa = "/var/run/secrets/kubernetes.io/serviceaccount"
      token, ns = open(sa + "/token").read(), open(sa + "/namespace").read()
      ctx = ssl.create_default_context(cafile=sa + "/ca.crt")
      host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
      request = urllib.request.Request(f"https://{host}:{port}/api/v1/namespaces/{ns}/pods",
                                       headers={"Authorization": "Bearer " + token})
      try:
          pods = len(json.load(urllib.request.urlopen(request, context=ctx))["items"])
      except urllib.error.HTTPError as error:
          pods = error.code
      with open("/data/" + os.environ["POD"], "w") as out:
          out.write("shared")
      report = {"greeting": open("/etc/cfg/greeting").read(),
                "password": open("/etc/sec/password").read(),
                "env": os.environ["GREETING"], "ip": os.environ["MY_IP"], "pods": pods,
                "claim": sorted(os.listdir("/data")), "cpu": os.environ["CPU_MILLIS"]}
      open("/dev/termination-log", "w").write(json.dumps(report))
    env:
    - {name: POD, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: MY_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: GREETING, valueFrom: {configMapKeyRef: {name: cfg, key: greeting}}}
    - {name: CPU_MILLIS, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    resources: {limits: {cpu: 250m, memory: 64Mi}}
    volumeMounts:
    - {name: cfg, mountPath: /etc/cfg}
    - {name: sec, mountPath: /etc/sec, readOnly: true}
    - {name: data, mountPath: /data}
  volumes:
  - {name: cfg, configMap: {name: cfg}}
  - {name: sec, secret: {secretName: sec}}
  - {name: data, persistentVolumeClaim: {claimName: data}}
"""


def _report(k: Kubectl, pod: str) -> dict[str, Any]:
    status = finished_pod(k, pod)["status"]
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    report: dict[str, Any] = json.loads(terminated["message"])
    report["podIP"] = status["podIP"]
    return report


def test_volumes_env_and_the_service_account_token(k: Kubectl) -> None:
    k("create", "configmap", "cfg", "--from-literal=greeting=hello")
    k("create", "secret", "generic", "sec", "--from-literal=password=s3cret")
    k("create", "serviceaccount", "reader")
    k("create", "serviceaccount", "stranger")
    k("create", "role", "pod-reader", "--verb=list", "--resource=pods")
    k(
        "create",
        "rolebinding",
        "reader",
        "--role=pod-reader",
        "--serviceaccount",
        f"{k.namespace}:reader",
    )
    docs = list(yaml.safe_load_all(VOLUMES))
    for name, account in (("allowed", "reader"), ("refused", "stranger")):
        pod = json.loads(
            json.dumps(docs[1]).replace('"PODNAME"', f'"{name}"').replace("ACCOUNT", account)
        )
        k.apply(docs[0])
        k.apply(pod)
        report = _report(k, name)
        assert report["greeting"] == "hello"
        assert report["password"] == "s3cret"
        assert report["env"] == "hello"
        assert report["ip"] == report["podIP"]
        assert report["cpu"] == "250"
        assert name in report["claim"]
        if name == "allowed":
            assert report["pods"] >= 1, "the token lists pods through RBAC"
        else:
            assert report["pods"] == 403, "a ServiceAccount without the Role is refused"
    assert report["claim"] == ["allowed", "refused"], "both pods share the claim's directory"
    pvc = k.json("get", "pvc", "data")
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "flywheel-local"


def test_a_missing_command_fails_the_pod_with_a_clear_reason(k: Kubectl) -> None:
    k.apply(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "no-command"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "nginx:1.27"}],
            },
        }
    )

    def failed() -> dict[str, Any] | None:
        status = k.json("get", "pod", "no-command")["status"]
        return status if status.get("phase") == "Failed" else None

    status = eventually(failed, timeout=60, what="the pod to fail")
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["reason"] == "StartError"
    assert "has no command" in terminated["message"]


def _pod(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {"containers": [{"name": "main", "image": PYTHON, **container}], **spec}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def test_a_failing_liveness_probe_restarts_the_container(k: Kubectl) -> None:
    k.apply(
        _pod(
            "flaky",
            {
                "command": ["python", "-c", "import time; time.sleep(3600)"],
                "livenessProbe": {
                    "exec": {"command": ["test", "-f", "/tmp/healthy"]},
                    "periodSeconds": 1,
                    "failureThreshold": 2,
                },
            },
            terminationGracePeriodSeconds=1,
        )
    )

    def restarted() -> dict[str, Any] | None:
        statuses = k.json("get", "pod", "flaky")["status"].get("containerStatuses", [])
        return statuses[0] if statuses and statuses[0]["restartCount"] >= 1 else None

    status = eventually(restarted, timeout=60, what="a restart after the liveness probe failed")
    assert "terminated" in status["lastState"], status


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(k: Kubectl) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    )
    k.apply(
        _pod("stubborn", {"command": ["python", "-c", stubborn]}, terminationGracePeriodSeconds=2)
    )
    k("wait", "--for=condition=Ready", "pod/stubborn", "--timeout=60s")
    started = time.monotonic()
    k("delete", "pod", "stubborn", "--wait=true", "--timeout=60s")
    elapsed = time.monotonic() - started
    assert elapsed >= 2, "SIGTERM is ignored, so the grace period runs out first"
    result = k.run("get", "pod", "stubborn", check=False)
    assert result.returncode != 0
    assert "NotFound" in result.stderr


def test_a_volume_over_the_checkout_does_not_hide_the_environment(k: Kubectl) -> None:
    """Like a Job's /tmp emptyDir when the checkout lives under /tmp (as in CI)."""
    parent = str(Path(__file__).resolve().parents[3])
    k.apply(
        _pod(
            "shadow",
            {
                "command": ["python", "-c", "import flywheel, os; print(os.listdir('.'))"],
                "workingDir": parent,
                "volumeMounts": [{"name": "scratch", "mountPath": parent}],
            },
            restartPolicy="Never",
            volumes=[{"name": "scratch", "emptyDir": {}}],
        )
    )

    def finished() -> dict[str, Any] | None:
        status = k.json("get", "pod", "shadow")["status"]
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    status = eventually(finished, timeout=60, what="the pod to finish")
    assert status["phase"] == "Succeeded", status["containerStatuses"][0]["state"]


@contextmanager
def _cpu_hog(processes: int = 2) -> Iterator[None]:
    """Busy loops on every core of this 2-core machine for the duration."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


@pytest.mark.slow
def test_a_hundred_short_jobs_under_a_cpu_hog_all_complete_with_their_results(k: Kubectl) -> None:
    """Every pod's exit reaches the API server although the machine is saturated (issue 22:
    under load a failed status write used to end a pod's status updates for good)."""
    count = 100
    jobs = [
        _job(f"short-{i}", f"open('/dev/termination-log', 'w').write('result {i}'); print({i})")
        for i in range(count)
    ]
    with _cpu_hog():
        k.apply({"apiVersion": "v1", "kind": "List", "items": jobs})

        def finished() -> list[dict[str, Any]] | None:
            items = k.json("get", "jobs")["items"]
            ended = [(_ended(j) or {}).get("type") for j in items]
            failed = [j["status"] for j, end in zip(items, ended, strict=True) if end == "Failed"]
            assert not failed, f"Jobs failed: {failed}"
            done = ended.count("Complete")
            return items if done == count else None

        eventually(finished, timeout=600, what=f"{count} Jobs to complete")
    pods = k.json("get", "pods", "-l", "job-name")["items"]
    results = {}
    for pod in pods:
        assert pod["status"]["phase"] == "Succeeded", pod["status"]
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == 0
        results[pod["metadata"]["labels"]["job-name"]] = terminated["message"]
    assert results == {f"short-{i}": f"result {i}" for i in range(count)}
