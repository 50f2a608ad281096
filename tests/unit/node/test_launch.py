"""What a container runs on the local node: from its image under Kubernetes' rules, or from the
host (devcluster.node.launch and .image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster.node import launch
from devcluster.node.env import ContainerConfigError
from images.store import Image

HOST_ENV = {"PATH": "/venv/bin:/usr/bin", "HOME": "/tmp", "KUBERNETES_SERVICE_HOST": "10.244.1.1"}


def _image(tmp_path: Path, user: str = "65532:65532") -> Image:
    etc = tmp_path / "rootfs" / "etc"
    etc.mkdir(parents=True)
    (etc / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napps:x:1001:\nextra:x:2000:\n")
    return Image(
        ref="registry/app:1",
        digest="d" * 64,
        rootfs=tmp_path / "rootfs",
        entrypoint=("python", "-m", "app"),
        cmd=("--serve",),
        env={"PATH": "/opt/app/bin:/usr/bin", "HOME": "/tmp", "MODE": "image"},
        working_dir="/srv",
        user=user,
    )


def _pod(container: dict[str, Any], **security: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [container]}
    if security:
        spec["securityContext"] = security
    return {"metadata": {"name": "p", "namespace": "n"}, "spec": spec}


def _plan(found: Image | None, **container: Any) -> launch.Launch:
    spec = {"name": "c", "image": "registry/app:1", **container}
    return launch.plan(
        _pod(spec),
        spec,
        host_env=HOST_ENV,
        image_commands={"ghcr.io/flywheel": ["python", "-m", "flywheel"]},
        find=lambda _: found,
    )


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["python", "-m", "app", "--serve"]),
        ({"args": ["--check"]}, ["python", "-m", "app", "--check"]),
        ({"args": []}, ["python", "-m", "app", "--serve"]),  # empty is unset, as containerd has it
        ({"command": ["sh"]}, ["sh"]),
        ({"command": ["sh"], "args": ["-c", "true"]}, ["sh", "-c", "true"]),
    ],
)
def test_command_replaces_the_entrypoint_and_drops_cmd_args_replace_cmd(
    tmp_path: Path, container: dict[str, Any], argv: list[str]
) -> None:
    assert _plan(_image(tmp_path), **container).argv == argv


def test_the_images_env_workdir_and_user_unless_the_spec_says_otherwise(tmp_path: Path) -> None:
    image = _image(tmp_path)
    how = _plan(image)
    assert how.lower == image.rootfs
    assert (how.working_dir, how.user) == ("/srv", (65532, 65532))
    assert how.base_env["PATH"] == "/opt/app/bin:/usr/bin", "not the host's virtualenv"
    assert how.base_env["MODE"] == "image"
    assert how.base_env["KUBERNETES_SERVICE_HOST"] == "10.244.1.1"
    assert how.base_env["HOSTNAME"] == "p"
    assert _plan(image, workingDir="/work").working_dir == "/work"
    mine = _plan(image, securityContext={"runAsUser": 7, "runAsGroup": 8})
    assert mine.user == (7, 8)


@pytest.mark.parametrize(
    ("user", "expected"),
    [("app", (1000, 1001)), ("app:extra", (1000, 2000)), ("1000", (1000, 1001)), ("", (0, 0))],
)
def test_a_named_user_and_group_are_looked_up_in_the_image(
    tmp_path: Path, user: str, expected: tuple[int, int]
) -> None:
    assert _plan(_image(tmp_path, user)).user == expected


def test_run_as_non_root_refuses_an_image_that_runs_as_root(tmp_path: Path) -> None:
    with pytest.raises(ContainerConfigError, match="runAsNonRoot and image registry/app:1"):
        _plan(_image(tmp_path, user=""), securityContext={"runAsNonRoot": True})
    assert _plan(
        _image(tmp_path / "b", user=""), securityContext={"runAsNonRoot": True, "runAsUser": 5}
    ).user == (5, 5)
    with pytest.raises(ContainerConfigError, match="unable to find user or group 'ghost'"):
        _plan(_image(tmp_path / "c", user="ghost"))


def test_an_unknown_image_runs_from_the_host_as_before(tmp_path: Path) -> None:
    how = _plan(None, command=["python"], args=["-V"])
    assert (how.image, how.lower, how.argv) == (None, None, ["python", "-V"])
    assert how.base_env["PATH"] == "/venv/bin:/usr/bin"
    mapped = _plan(None, image="ghcr.io/flywheel-dev/flywheel-operator:0.1.0", args=["--x"])
    assert mapped.argv == ["python", "-m", "flywheel", "--x"]
    assert _plan(None, securityContext={"runAsNonRoot": True}, command=["x"]).user == (
        65532,
        65532,
    )
    with pytest.raises(ContainerConfigError, match="neither in the local image store"):
        _plan(None, image="python:3.11")
