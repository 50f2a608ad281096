"""The import contracts hold what they claim: `make lint` (lint-imports) fails when code crosses
a layer, and the serving list names every module but the shared names."""

from __future__ import annotations

import configparser
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import flywheel_serving

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return parser


def _lint_with(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """lint-imports on a copy of the tree with one import added to one module."""
    for folder in ("operator", "serving"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    path = tmp_path / "operator" / (module.replace(".", "/") + ".py")
    text = path.read_text()
    marker = "from __future__ import annotations\n"
    path.write_text(text.replace(marker, marker + line + "\n", 1))
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'operator'}:{tmp_path / 'serving'}"}
    return subprocess.run(
        [str(LINT), "--config", str(tmp_path / ".importlinter"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        (
            "flywheel.jobs.train",
            "from flywheel.kube.client import Kube  # noqa",
            "The Jobs' code (entrypoints, data, training, artifacts) never imports",
        ),
        (
            "flywheel.controllers.dataset.decide",
            "from flywheel.runtime.store import CachedStore  # noqa",
            "Decisions and builders are pure",
        ),
        (
            "flywheel.controllers.modelmonitor.decide",
            "from flywheel.controllers.trainingrun.render import job_name  # noqa",
            "Controllers cooperate only through status",
        ),
        (
            "flywheel.core.objects",
            "import flywheel.runtime.queue  # noqa",
            "Operator layers",
        ),
    ],
)
def test_a_forbidden_import_fails_the_lint(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = _lint_with(tmp_path, module, line)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0, output[-2000:]
    assert "BROKEN" in output
    assert contract in output, output[-2000:]


def test_no_contract_allows_indirect_imports() -> None:
    text = (ROOT / ".importlinter").read_text()
    assert "allow_indirect_imports" not in text


def test_the_operator_may_import_only_the_shared_names_of_serving() -> None:
    forbidden = set(
        _contracts()["importlinter:contract:serving-names"]["forbidden_modules"].split()
    )
    modules = {
        f"flywheel_serving.{m.name}" for m in pkgutil.iter_modules(flywheel_serving.__path__)
    }
    assert modules - forbidden == {"flywheel_serving.names"}


def test_the_shared_names_import_the_standard_library_only() -> None:
    probe = (
        "import sys; before = set(sys.modules); import flywheel_serving.names; "
        "print('\\n'.join(sorted(set(sys.modules) - before)))"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "serving")},
    )
    loaded = {name.split(".")[0] for name in result.stdout.split()}
    assert loaded - set(sys.stdlib_module_names) == {"flywheel_serving"}
