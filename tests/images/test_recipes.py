"""What the image build reads and how it keys its cache (hack/images; no build here): the
references agree with the chart and the operator, the content digest follows exactly what the
Dockerfiles copy, the Dockerfiles install the locked dependencies before the source, and the
store's index reads back what was published."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from flywheel.settings import OperatorSettings
from images.build import ensure_images, image_digest
from images.digest import copy_sources, instructions, tree_digest
from images.recipes import OPERATOR_REF, REPO, SERVING_REF, Recipe, default_recipes
from images.store import in_use, lookup, pin, prune, publish

DOCKERFILES = [REPO / "operator" / "Dockerfile", REPO / "serving" / "Dockerfile"]


def test_references_are_the_ones_the_chart_and_the_operator_use() -> None:
    settings = OperatorSettings()
    assert (settings.job_image, settings.serving_image) == (OPERATOR_REF, SERVING_REF)
    chart = yaml.safe_load((REPO / "charts/flywheel/Chart.yaml").read_text())
    values = yaml.safe_load((REPO / "charts/flywheel/values.yaml").read_text())
    tag = values["image"]["tag"] or chart["appVersion"]
    assert f"{values['image']['repository']}:{tag}" == OPERATOR_REF
    tag = values["servingImage"]["tag"] or chart["appVersion"]
    assert f"{values['servingImage']['repository']}:{tag}" == SERVING_REF
    assert [r.ref for r in default_recipes()] == [OPERATOR_REF, SERVING_REF]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["operator", "serving"])
def test_the_digest_covers_what_the_dockerfile_copies(dockerfile: Path) -> None:
    assert copy_sources(dockerfile) == [
        "pyproject.toml",
        "constraints.txt",
        "README.md",
        "operator/flywheel",
        "serving/flywheel_serving",
    ]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=["operator", "serving"])
def test_locked_dependencies_are_installed_before_the_source_is_copied(dockerfile: Path) -> None:
    steps = list(instructions(dockerfile.read_text()))
    deps = next(i for i, s in enumerate(steps) if "-r pyproject.toml" in s)
    source = next(i for i, s in enumerate(steps) if s.startswith("COPY operator/flywheel"))
    project = next(i for i, s in enumerate(steps) if "--no-deps ." in s)
    assert "-c constraints.txt" in steps[deps]
    copied_before = [s for s in steps[:deps] if s.startswith("COPY")]
    assert copied_before == ["COPY pyproject.toml constraints.txt ./"]
    assert deps < source < project
    assert "HOME=/tmp" in next(s for s in steps if s.startswith("ENV PATH=/opt/flywheel/bin"))


def _context(tmp_path: Path) -> tuple[Path, Path]:
    """A copy of what the serving Dockerfile reads, plus files it does not."""
    context = tmp_path / "context"
    for name in ("pyproject.toml", "constraints.txt", "README.md", ".dockerignore"):
        (context / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, context / name)
    for folder in ("operator/flywheel", "serving/flywheel_serving"):
        shutil.copytree(REPO / folder, context / folder, ignore=shutil.ignore_patterns("*.pyc"))
    (context / "serving" / "Dockerfile").write_text((REPO / "serving/Dockerfile").read_text())
    (context / "docs").mkdir()
    (context / "docs" / "notes.md").write_text("not copied\n")
    return context, context / "serving" / "Dockerfile"


def test_the_digest_changes_with_the_copied_files_only(tmp_path: Path) -> None:
    context, dockerfile = _context(tmp_path)

    def digest() -> str:
        return tree_digest(context, dockerfile, ["salt"])

    first = digest()
    assert digest() == first
    assert tree_digest(context, dockerfile, ["other salt"]) != first
    # Neither byte-code caches (.dockerignore) nor files the Dockerfile does not copy count.
    cache = context / "serving" / "flywheel_serving" / "__pycache__"
    cache.mkdir(exist_ok=True)
    (cache / "names.cpython-311.pyc").write_bytes(b"\0")
    (context / "docs" / "notes.md").write_text("edited\n")
    (context / "flywheel.egg-info").mkdir()
    assert digest() == first
    # One .py edit, a lock change and a Dockerfile change each make another image.
    names = context / "serving" / "flywheel_serving" / "names.py"
    names.write_text(names.read_text() + "# edited\n")
    edited = digest()
    assert edited != first
    with (context / "constraints.txt").open("a") as handle:
        handle.write("# relocked\n")
    relocked = digest()
    assert relocked not in (first, edited)
    dockerfile.write_text(dockerfile.read_text() + "LABEL edited=1\n")
    assert digest() not in (first, edited, relocked)


def test_image_digest_includes_the_build_arguments() -> None:
    recipe = default_recipes()[1]
    other = Recipe(recipe.name, recipe.ref, recipe.dockerfile, build_args={"VERSION": "9.9.9"})
    assert image_digest(recipe) != image_digest(other)


def _fake_image(root: Path, digest: str) -> None:
    (root / digest / "rootfs").mkdir(parents=True)
    config = {
        "config": {
            "Entrypoint": ["python", "-m", "flywheel_serving"],
            "Env": ["PATH=/opt/flywheel/bin:/usr/bin", "HOME=/tmp", "EMPTY="],
            "WorkingDir": "/tmp",
            "User": "65532:65532",
        }
    }
    (root / digest / "config.json").write_text(json.dumps(config))
    (root / digest / "image.json").write_text(json.dumps({"size_bytes": 42}))


def test_the_store_publishes_looks_up_and_keeps_one_previous_generation(tmp_path: Path) -> None:
    ref = SERVING_REF
    assert lookup(ref, tmp_path) is None
    digests = [c * 64 for c in "abc"]
    for digest in digests:
        _fake_image(tmp_path, digest)
        publish(tmp_path, ref, digest)
    image = lookup(ref, tmp_path)
    assert image is not None
    assert image.digest == digests[-1]
    assert image.rootfs == tmp_path / digests[-1] / "rootfs"
    assert image.entrypoint == ("python", "-m", "flywheel_serving")
    assert image.cmd == ()
    assert image.env == {"PATH": "/opt/flywheel/bin:/usr/bin", "HOME": "/tmp", "EMPTY": ""}
    assert (image.working_dir, image.user, image.size_bytes) == ("/tmp", "65532:65532", 42)
    (tmp_path / ".dddd.partial").mkdir()
    assert prune(tmp_path) == [tmp_path / ".dddd.partial", tmp_path / digests[0]]
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == digests[1:]
    # An index entry whose directory is incomplete is not an image.
    shutil.rmtree(tmp_path / digests[-1] / "rootfs")
    assert lookup(ref, tmp_path) is None
    assert lookup("ghcr.io/flywheel-dev/unknown:0.1.0", tmp_path) is None


def test_a_kept_digest_is_published_again_without_a_build(tmp_path: Path) -> None:
    recipe = default_recipes()[1]
    wanted = image_digest(recipe)
    _fake_image(tmp_path, wanted)
    _fake_image(tmp_path, "e" * 64)
    publish(tmp_path, recipe.ref, wanted)
    publish(tmp_path, recipe.ref, "e" * 64)  # another checkout's build of the reference
    lines: list[str] = []
    found = ensure_images([recipe], root=tmp_path, progress=lines.append)
    assert not (tmp_path / "containers").exists(), "nothing was built"
    assert found[recipe.ref].digest == wanted
    assert lookup(recipe.ref, tmp_path) == found[recipe.ref]
    assert lines == [f"serving: {recipe.ref} unpacked earlier (digest {wanted[:12]})"]


def test_an_image_a_container_runs_from_is_not_pruned_until_released(tmp_path: Path) -> None:
    digests = [c * 64 for c in "abcd"]
    for digest in digests[:2]:
        _fake_image(tmp_path, digest)
        publish(tmp_path, SERVING_REF, digest)
    running = lookup(SERVING_REF, tmp_path)
    assert running is not None
    held = pin(running)  # a local node runs a container from b
    try:
        for digest in digests[2:]:  # another checkout builds twice meanwhile
            _fake_image(tmp_path, digest)
            publish(tmp_path, SERVING_REF, digest)
        assert in_use(tmp_path / digests[1])
        assert prune(tmp_path) == [tmp_path / digests[0]], "b is neither current nor previous"
        assert (running.rootfs).is_dir(), "but a container runs from it"
    finally:
        os.close(held)
    assert not in_use(tmp_path / digests[1])
    assert prune(tmp_path) == [tmp_path / digests[1]]
