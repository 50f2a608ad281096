"""A pod sees its root, its own volumes and the runtime, and nothing of the cluster's state or of
other pods' volumes (issue 22 part 5; hack/devcluster/node/isolation.py)."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devcluster.node import isolation, sandbox
from devcluster.node.isolation import MASK, RUNTIME, SCRATCH, Layer, plan
from devcluster.node.sandbox import ContainerRoot, Mount
from flywheel.core.podspec import RESTRICTED_CONTAINER, RESTRICTED_POD
from tests.support.kube import Kubectl, finished_pod, fresh_namespace

PYTHON = "python:3.11"  # recorded, not pulled: the node runs the project's environment
RUNTIME_IN_TMP = sorted(
    {
        path.relative_to("/tmp").parts[0]
        for path in isolation.runtime_dirs(sandbox.PROJECT)
        if path.is_relative_to("/tmp") and path != Path("/tmp")
    }
)
"""What a container's fresh /tmp shows: nothing, unless the runtime (a checkout, its virtualenv)
lives under /tmp, which stays visible there (a CI clone under /tmp)."""

LOOK = """
import json, os
def look(path):
    try:
        if os.path.isdir(path):
            entries = sorted(os.listdir(path))
            return "empty" if not entries else "lists " + ",".join(entries[:6])
        with open(path, "rb") as handle:
            return "reads " + repr(handle.read(24))
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return type(error).__name__
report = {path: look(path) for path in json.loads(os.environ["PATHS"])}
open("/dev/termination-log", "w").write(json.dumps(report))
"""

ATTEMPT = """
import errno, json, os
def attempt(path):
    try:
        with open(path, "w") as handle:
            handle.write("x")
        return "written"
    except OSError as error:
        return errno.errorcode.get(error.errno, str(error.errno))
report = {path: attempt(path) for path in json.loads(os.environ["PATHS"])}
report["tmp"] = sorted(os.listdir("/tmp"))
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def _pod(name: str, container: dict[str, Any], **spec: Any) -> dict[str, Any]:
    body = {
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": 1,
        "containers": [{"name": "main", "image": PYTHON, **container}],
        **spec,
    }
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": body}


def _claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def _output(k: Kubectl, pod: str) -> Any:
    """The JSON a finished pod wrote as its termination message (the pod must have succeeded;
    `kubectl logs` does not reach the local node)."""

    status = finished_pod(k, pod)["status"]
    terminated = status["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 0, terminated
    return json.loads(terminated["message"])


@pytest.fixture
def other(kubectl: Kubectl, namespace: str) -> Iterator[Kubectl]:
    """kubectl in a second fresh namespace."""
    name = f"{namespace}-b"
    with fresh_namespace(kubectl, name) as k:
        yield k


def test_a_pod_cannot_see_another_pods_volumes_or_the_cluster_state(
    k: Kubectl, other: Kubectl
) -> None:
    keeper = """
import pathlib, time
for directory in ("/data", "/scratch"):
    secret = pathlib.Path(directory) / "secret.txt"
    secret.write_text("pod A's data")
    assert secret.read_text() == "pod A's data"
pathlib.Path("/scratch/ready").touch()
time.sleep(3600)
"""
    k.apply(_claim("data"))
    k.apply(
        _pod(
            "keeper",
            {
                "command": ["python", "-c", keeper],
                "readinessProbe": {
                    "exec": {"command": ["test", "-f", "/scratch/ready"]},
                    "periodSeconds": 1,
                },
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "scratch", "mountPath": "/scratch"},
                ],
            },
            volumes=[
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "scratch", "emptyDir": {}},
            ],
        )
    )
    k("wait", "--for=condition=Ready", "pod/keeper", "--timeout=90s")

    # Where the node keeps pod A's volumes and the cluster's secrets on the host.
    cluster = k.kubeconfig.parent
    volume = k.json("get", "pvc", "data")["spec"]["volumeName"]
    claim_dir = Path(k.json("get", "pv", volume)["spec"]["hostPath"]["path"])
    uid = k.json("get", "pod", "keeper")["metadata"]["uid"]
    empty_dir = cluster / "node" / "pods" / uid / "volumes" / "scratch"
    secrets = [
        claim_dir,
        claim_dir / "secret.txt",
        empty_dir,
        empty_dir / "secret.txt",
        cluster / "node" / "volumes",
        cluster / "node" / "pods",
        cluster,
        cluster / "pki" / "ca.key",
        cluster / "pki" / "admin.key",
        cluster / "kubeconfig",
        cluster / "state.json",
    ]
    for path in secrets:
        assert path.exists(), f"{path} is on the host: the pod must not see it"

    probes = [*map(str, secrets), "/run/flywheel-devcluster/claims", "/root/.cache/flywheel"]
    other.apply(_pod("prober", {"command": ["python", "-c", LOOK], "env": [_env("PATHS", probes)]}))
    seen = _output(other, "prober")
    leaked = {path: what for path, what in seen.items() if what not in ("missing", "empty")}
    assert not leaked, f"pod B sees the host: {leaked}"

    pod = k.json("get", "pod", "keeper")
    assert pod["status"]["phase"] == "Running"
    assert (claim_dir / "secret.txt").read_text() == "pod A's data"
    assert (empty_dir / "secret.txt").read_text() == "pod A's data"


def _env(name: str, value: Any) -> dict[str, str]:
    return {"name": name, "value": json.dumps(value)}


def test_read_only_mounts_and_a_read_only_root_stay_read_only(k: Kubectl) -> None:
    k("create", "configmap", "cfg", "--from-literal=greeting=hello")
    paths = [
        "/new-file",
        "/etc/new-file",
        "/tmp/new-file",
        "/var/tmp/new-file",
        "/rw/file",
        "/ro/other",
        "/cfg/other",
    ]
    k.apply(
        _pod(
            "readonly",
            {
                "command": ["python", "-c", ATTEMPT],
                "env": [_env("PATHS", paths)],
                "securityContext": {"readOnlyRootFilesystem": True},
                "volumeMounts": [
                    {"name": "shared", "mountPath": "/rw"},
                    {"name": "shared", "mountPath": "/ro", "readOnly": True},
                    {"name": "cfg", "mountPath": "/cfg"},
                ],
            },
            volumes=[
                {"name": "shared", "emptyDir": {}},
                {"name": "cfg", "configMap": {"name": "cfg"}},
            ],
        )
    )
    report = _output(k, "readonly")
    assert report == {
        "/new-file": "EROFS",
        "/etc/new-file": "EROFS",
        "/tmp/new-file": "EROFS",
        "/var/tmp/new-file": "EROFS",
        "/rw/file": "written",
        "/ro/other": "EROFS",
        "/cfg/other": "EROFS",
        "tmp": RUNTIME_IN_TMP,
    }


SYS = {"/sys/class/net/eth0/mtu": "EROFS", "/sys/fs/cgroup/memory/memory.limit_in_bytes": "ENOENT"}
"""The pod's sysfs is read-only (writing "x" to its own eth0's MTU would otherwise be refused
as invalid: harmless), and no cgroup hierarchy is mounted in it."""


def test_a_writable_root_gets_a_fresh_tmp_and_a_read_only_sys(k: Kubectl) -> None:
    marker = Path("/tmp") / f"flywheel-isolation-{uuid.uuid4().hex[:8]}"
    marker.write_text("the host's")
    from_pod = marker.with_name(marker.name + "-pod")
    try:
        k.apply(
            _pod(
                "writable",
                {
                    "command": ["python", "-c", ATTEMPT],
                    "env": [_env("PATHS", ["/new-file", str(from_pod), "/var/tmp/new-file", *SYS])],
                },
            )
        )
        report = _output(k, "writable")
    finally:
        marker.unlink()
    assert report == {
        "/new-file": "written",
        str(from_pod): "written",
        "/var/tmp/new-file": "written",
        **SYS,
        "tmp": sorted([from_pod.name, *RUNTIME_IN_TMP]),
    }, "the host's /tmp is not the pod's; /sys is read-only, even to root, with no cgroups"
    assert not from_pod.exists()
    assert not Path("/new-file").exists()


def test_a_host_path_into_a_hidden_directory_is_still_mounted(k: Kubectl, tmp_path: Path) -> None:
    """hostPath is the pod's explicit choice: mounted after the masks, even under /tmp or at a
    path inside /root."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "input.txt").write_text("from the host")
    code = (
        "import os; text = open('/host/input.txt').read();"
        " open('/root/inside/output.txt', 'w').write(text.upper());"
        " open('/dev/termination-log', 'w').write(__import__('json').dumps(os.listdir('/root')))"
    )
    k.apply(
        _pod(
            "host-path",
            {
                "command": ["python", "-c", code],
                "volumeMounts": [
                    {"name": "host", "mountPath": "/host", "readOnly": True},
                    {"name": "host", "mountPath": "/root/inside"},
                ],
            },
            volumes=[{"name": "host", "hostPath": {"path": str(shared), "type": "Directory"}}],
        )
    )
    listing = _output(k, "host-path")
    assert (shared / "output.txt").read_text() == "FROM THE HOST"
    assert "inside" in listing
    assert ".cache" not in listing, "the rest of /root stays hidden"


def test_a_flywheel_like_pod_runs_python_from_the_virtualenv(k: Kubectl) -> None:
    """The operator's Job pods: non-root, read-only root, the artifacts claim and a /tmp
    emptyDir; they import the project from the virtualenv that stands in for the image."""
    code = (
        "import json, os, sys, flywheel.jobs, flywheel_serving;"
        " open('/artifacts/store/ok', 'w').write('ok');"
        " open('/dev/termination-log', 'w').write(json.dumps({'prefix': sys.prefix,"
        " 'module': flywheel.jobs.__file__, 'uid': os.getuid(), 'tmp': os.listdir('/tmp')}))"
    )
    k.apply(_claim("store"))
    pod = _pod(
        "flywheel-like",
        {
            "command": ["python", "-c", code],
            "securityContext": RESTRICTED_CONTAINER,
            "volumeMounts": [
                {"name": "artifacts", "mountPath": "/artifacts/store"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
        },
        securityContext=RESTRICTED_POD,
        volumes=[
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": "store"}},
            {"name": "tmp", "emptyDir": {}},
        ],
    )
    k.apply(pod)
    report = _output(k, "flywheel-like")
    assert report["uid"] == 65532
    assert (Path(report["prefix"]) / "pyvenv.cfg").is_file(), "the node runs a virtualenv"
    assert Path(report["module"]).is_file()
    assert report["tmp"] == RUNTIME_IN_TMP


# The plan itself: which host directories get a mask, a scratch or the runtime back.


def _plan(masks: list[str], scratch: list[str], runtime: list[str]) -> list[Layer]:
    return plan(masks, scratch, runtime, is_dir=lambda path: path != "/nowhere")


def test_the_runtime_is_kept_under_a_mask_and_its_cluster_directory_masked_again() -> None:
    layers = _plan(
        masks=["/root", "/root/.cache/flywheel", "/work/app/.cluster", "/tmp/pytest/cluster0"],
        scratch=["/tmp"],
        runtime=["/work/app", "/work/app/.venv", "/root/.pyenv/versions/3.11"],
    )
    assert layers == [
        Layer("/root", MASK),
        Layer("/tmp", SCRATCH),
        Layer("/work/app/.cluster", MASK),
        Layer("/root/.pyenv/versions/3.11", RUNTIME),
    ], "no mask inside a mask or scratch, no runtime where it is visible anyway"


def test_a_checkout_under_tmp_comes_back_and_the_root_and_missing_paths_are_never_masked() -> None:
    layers = _plan(
        masks=["/", "/nowhere", "/tmp/ci/repo/.cluster", "/tmp/ci/repo"],
        scratch=["/tmp"],
        runtime=["/tmp/ci/repo"],
    )
    assert layers == [
        Layer("/tmp", SCRATCH),
        Layer("/tmp/ci/repo", RUNTIME),
        Layer("/tmp/ci/repo/.cluster", MASK),
    ], "the runtime wins over a mask of the same path; / is never hidden"


SEE = """
import json, os, yaml  # a package of the virtualenv: the runtime works
def look(path):
    try:
        if os.path.isdir(path):
            return sorted(os.listdir(path))
        with open(path) as handle:
            return handle.read()
    except OSError as error:
        return type(error).__name__
print(json.dumps({path: look(path) for path in json.loads(os.environ["PATHS"])}))
"""


def test_a_cluster_inside_a_checkout_under_tmp_stays_hidden_with_the_checkout_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As in CI: the checkout under /tmp (behind the pod's fresh /tmp) and `.cluster` inside it.
    The root script runs in a throwaway mount namespace, without a cluster."""
    project = tmp_path / "checkout"
    (project / "src").mkdir(parents=True)
    (project / "src" / "code.py").write_text("from the checkout")
    state = project / ".cluster"
    (state / "pki").mkdir(parents=True)
    (state / "pki" / "ca.key").write_text("the CA's key")
    volume = state / "node" / "volumes" / "ns_claim_uid"
    volume.mkdir(parents=True)
    (volume / "data.txt").write_text("a pod's data")
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(sandbox, "PROJECT", project)
    layers = isolation.host_view(state / "node", project)
    paths = [str(project / "src" / "code.py"), str(state), str(volume / "data.txt"), "/data"]
    seen = {}
    for case, mounts in {
        "checkout kept": [Mount(volume, "/data")],
        "volume over the checkout": [Mount(volume, "/data"), Mount(tmp_path / "empty", "/tmp")],
    }.items():
        mounts = [*mounts, *sandbox._shadowed_environment(mounts, layers)]
        base = state / "node" / "pods" / "uid" / "containers" / case.replace(" ", "-")
        root = ContainerRoot(base / "rootfs", base / "upper", base / "work", mounts, layers)
        probe = shlex.join(
            ["chroot", str(root.merged), "env", f"PATHS={json.dumps(paths)}", sys.executable]
        )
        script = f"{sandbox._root_script(root, read_only=True)}\n{probe} -c {shlex.quote(SEE)}"
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-euc", script]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr[-2000:]
        seen[case] = json.loads(done.stdout)
    for case, report in seen.items():
        assert report == {
            str(project / "src" / "code.py"): "from the checkout",
            str(state): [],
            str(volume / "data.txt"): "FileNotFoundError",
            "/data": ["data.txt"],
        }, case
