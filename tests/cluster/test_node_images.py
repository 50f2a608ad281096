"""Pods run from their images on the local node (issue 23, part 2): the image's root file system,
ENTRYPOINT/CMD/ENV/WORKDIR/USER under Kubernetes' rules, `runAsNonRoot` checked against the
image's user, generated /etc/hosts and /etc/hostname; an image the store does not know runs from
the host's environment, and the pod's events say which.

The images come from `make images-local` (hack/images), built or reused by `ensure_images`.
"""

from __future__ import annotations

import json
from typing import Any

from images.recipes import OPERATOR_REF, SERVING_REF
from images.store import Image
from tests.support.examples import ROOT
from tests.support.kube import Kubectl, finished_pod

REPORT = """
import json, os, sys
def read(path):
    try:
        return open(path).read()
    except OSError as error:
        return type(error).__name__
report = {
    "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "prefix": sys.prefix,
    "home": os.environ.get("HOME"), "path": os.environ.get("PATH"),
    "mine": os.environ.get("MINE"), "hostname": read("/etc/hostname").strip(),
    "hosts": read("/etc/hosts"), "checkout": os.path.exists(os.environ["CHECKOUT"]),
}
try:
    import kopf  # noqa
    report["kopf"] = True
except ImportError:
    report["kopf"] = False
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def _pod(name: str, image: str, **container: Any) -> dict[str, Any]:
    spec = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": image, **container}],
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def _finished(k: Kubectl, name: str) -> dict[str, Any]:
    return finished_pod(k, name, timeout=120)


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    return dict(pod["status"]["containerStatuses"][0]["state"]["terminated"])


def _reasons(k: Kubectl, name: str) -> dict[str, str]:
    items = k.json("get", "events", "--field-selector", f"involvedObject.name={name}")["items"]
    return {e["reason"]: e["message"] for e in items}


def test_a_pod_runs_from_its_image_with_the_images_user_workdir_and_environment(
    k: Kubectl, built: dict[str, Image]
) -> None:
    env = [{"name": "MINE", "value": "from the pod"}, {"name": "CHECKOUT", "value": str(ROOT)}]
    k.apply(_pod("from-image", OPERATOR_REF, command=["python", "-c", REPORT], env=env))
    pod = _finished(k, "from-image")
    terminated = _terminated(pod)
    assert terminated["exitCode"] == 0, terminated
    report = json.loads(terminated["message"])
    assert (report["uid"], report["gid"]) == (65532, 65532), "USER 65532:65532 of the image"
    assert report["cwd"] == "/tmp", "WORKDIR"
    assert report["prefix"] == "/opt/flywheel", "the image's virtualenv, not the host's"
    assert report["home"] == "/tmp"
    assert report["path"].startswith("/opt/flywheel/bin:"), "the image's ENV"
    assert report["mine"] == "from the pod"
    assert report["kopf"] is True
    assert report["checkout"] is False, "the host's checkout is not in the image"
    assert report["hostname"] == "from-image"
    assert f"{pod['status']['podIP']}\tfrom-image" in report["hosts"]
    assert _reasons(k, "from-image")["Pulled"] == (
        f'Container image "{OPERATOR_REF}" already present on machine'
    )


def test_args_replace_the_images_cmd_and_keep_its_entrypoint(
    k: Kubectl, built: dict[str, Image]
) -> None:
    k.apply(_pod("entrypoint", SERVING_REF, args=["--help"]))
    terminated = _terminated(_finished(k, "entrypoint"))
    assert terminated["exitCode"] == 0, terminated
    assert "usage" in k("logs", "entrypoint").lower(), "python -m flywheel_serving --help"


def test_run_as_non_root_refuses_an_image_that_runs_as_root(
    k: Kubectl, built: dict[str, Image]
) -> None:
    root_user = {"runAsNonRoot": True, "runAsUser": 0}
    k.apply(_pod("as-root", SERVING_REF, securityContext=root_user))
    terminated = _terminated(_finished(k, "as-root"))
    assert terminated["exitCode"] != 0
    assert "runAsNonRoot" in terminated["message"], terminated


def test_an_image_the_store_does_not_know_runs_from_the_host_and_says_so(k: Kubectl) -> None:
    k.apply(_pod("host-run", "python:3.11", command=["python", "-c", "print('on the host')"]))
    assert _terminated(_finished(k, "host-run"))["exitCode"] == 0
    message = _reasons(k, "host-run")["HostRuntime"]
    assert '"python:3.11" is not in the local image store' in message
