"""The images built without Docker (hack/images, `make images-local`): the Debian base, both
Dockerfiles built with buildah, unpacked with their configs; the local node runs pods from them.

The module builds them through the same code as `make images-local`, or reuses them (`.ci/run`
builds them before the tests, so this is a cache hit there; a cold build takes a few minutes).
Without mmdebstrap or buildah the tests FAIL with the command that installs them: nothing is
skipped. The contents are checked by running the image's own Python from its read-only root as
its user (tests/support/images.py).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

import images.__main__ as images_cli
from images.base import base_ref
from images.build import build, ensure_images, image_digest
from images.buildah import Buildah, BuildFailed
from images.recipes import OPERATOR_REF, REPO, SERVING_REF, VERSION, Recipe
from images.store import Image, images_root, lookup
from tests.support.images import run_in_image

pytestmark = pytest.mark.slow

MISSING_PACKAGE = "flywheel-no-such-package"


def test_image_configs(built: dict[str, Image]) -> None:
    operator, serving = built[OPERATOR_REF], built[SERVING_REF]
    assert operator.entrypoint == ("python", "-m", "flywheel")
    assert serving.entrypoint == ("python", "-m", "flywheel_serving")
    for image in (operator, serving):
        assert image.cmd == ()
        assert image.user == "65532:65532"
        assert image.working_dir == "/tmp"
        assert image.env["HOME"] == "/tmp"
        assert image.env["PATH"].startswith("/opt/flywheel/bin:")
        # The virtualenv's python links to the image's /usr/bin/python (absolute).
        assert (image.rootfs / "opt/flywheel/bin/python").is_symlink()
        assert (image.rootfs / "usr/bin/python3.11").is_file()


def test_the_operator_image_runs_the_operator_and_the_jobs(built: dict[str, Image]) -> None:
    image = built[OPERATOR_REF]
    modules = "flywheel.__main__, flywheel.jobs.ingest, flywheel.jobs.train, kopf, lightkube"
    code = f"import os, {modules}, sklearn, skl2onnx, onnxruntime, flywheel_serving.names; "
    code += "print(os.getuid(), os.getgid(), os.environ['HOME'], os.getcwd())"
    done = run_in_image(image, ["python", "-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["65532", "65532", "/tmp", "/tmp"]
    assert done.stderr == ""
    done = run_in_image(image, ["python", "-m", "flywheel", "--help"])
    assert done.returncode == 0, done.stderr
    # Only the operator's command; the server's is removed from this image.
    assert not (image.rootfs / "opt/flywheel/bin/flywheel-serving").exists()


def test_the_serving_image_has_onnxruntime_and_not_the_operator_stack(
    built: dict[str, Image],
) -> None:
    image = built[SERVING_REF]
    code = (
        "import importlib.util as u, flywheel_serving.__main__, onnxruntime, uvicorn, grpc; "
        "print(onnxruntime.get_device(), "
        "[m for m in ('kopf', 'kubernetes', 'lightkube', 'sklearn', 'skl2onnx', 'pandas', "
        "'flywheel') if u.find_spec(m)])"
    )
    done = run_in_image(image, ["python", "-c", code])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CPU []"
    assert done.stderr == ""
    size_mb = image.size_bytes / 1e6
    assert size_mb < built[OPERATOR_REF].size_bytes / 1e6 / 1.5, "serving is the small image"


def test_the_build_time_trust_store_is_not_baked_in(built: dict[str, Image]) -> None:
    local = Path("/usr/local/share/ca-certificates")
    host_only = [p.read_text().strip() for p in (local.rglob("*.crt") if local.is_dir() else [])]
    for image in built.values():
        assert not (image.rootfs / "etc/uv").exists()
        bundle = (image.rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
        assert not [cert for cert in host_only if cert in bundle]


def test_an_unchanged_tree_is_a_cache_hit(built: dict[str, Image]) -> None:
    lines: list[str] = []
    started = time.monotonic()
    again = ensure_images(progress=lines.append)
    elapsed = time.monotonic() - started
    assert again == built
    assert len(lines) == 2
    assert all("up to date" in line for line in lines), lines
    assert elapsed < 10, f"a cache hit took {elapsed:.1f} s"


def test_a_source_edit_reuses_the_dependency_layer(built: dict[str, Image], tmp_path: Path) -> None:
    context = tmp_path / "context"
    for name in ("pyproject.toml", "constraints.txt", "README.md", ".dockerignore"):
        context.mkdir(exist_ok=True)
        shutil.copy(REPO / name, context / name)
    for folder in ("operator/flywheel", "serving/flywheel_serving"):
        shutil.copytree(REPO / folder, context / folder, ignore=shutil.ignore_patterns("*.pyc"))
    names = context / "serving/flywheel_serving/names.py"
    # Unique per run: the layer cache remembers earlier runs' edits.
    names.write_text(names.read_text() + f"# an edit {uuid.uuid4()}\n")
    recipe = Recipe(
        "serving-edit",
        "localhost/flywheel-test/serving-edit:0",
        REPO / "serving" / "Dockerfile",
        context,
        {"VERSION": VERSION},
    )
    assert image_digest(recipe) != built[SERVING_REF].digest
    buildah = Buildah(images_root())
    try:
        steps = build(recipe, buildah, base_ref(), images_root(), lambda line: None)
    finally:
        buildah.remove(recipe.ref)
    deps = [s for s in steps if "-r pyproject.toml" in s.text]
    project = [s for s in steps if "--no-deps ." in s.text]
    assert len(deps) == len(project) == 1
    assert deps[0].cached, "the dependencies were installed again"
    assert not project[0].cached


def _broken(tmp_path: Path) -> Recipe:
    """The serving Dockerfile with a missing Debian package installed in its build stage."""
    text = (REPO / "serving" / "Dockerfile").read_text()
    broken = text.replace(
        "WORKDIR /src\n",
        f"WORKDIR /src\nRUN apt-get install -y --no-install-recommends {MISSING_PACKAGE}\n",
        1,
    )
    assert broken != text
    (tmp_path / "Dockerfile").write_text(broken)
    ref = "localhost/flywheel-test/broken:0"
    return Recipe("broken", ref, tmp_path / "Dockerfile", REPO, {"VERSION": VERSION})


def test_a_broken_dockerfile_fails_with_the_containers_own_error(
    built: dict[str, Image], tmp_path: Path
) -> None:
    recipe = _broken(tmp_path)
    with pytest.raises(BuildFailed) as failed:
        ensure_images([recipe], progress=lambda line: None)
    message = str(failed.value)
    assert f"E: Unable to locate package {MISSING_PACKAGE}" in message
    assert str(recipe.dockerfile) in message
    assert lookup(recipe.ref) is None


def test_the_command_exits_non_zero_with_the_builds_output(
    built: dict[str, Image],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    recipe = _broken(tmp_path)
    monkeypatch.setattr(images_cli, "default_recipes", lambda: (recipe,))
    assert images_cli.main(["build", "--no-install"]) == 1
    err = capsys.readouterr().err
    assert "images: FAILED: buildah bud" in err
    assert f"Unable to locate package {MISSING_PACKAGE}" in err
