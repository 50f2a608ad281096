"""Loading the manifests under `examples/` with their `# expect:` / `# stage:` annotations."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
CRDS = ROOT / "crds"


@dataclass(frozen=True)
class Example:
    """One manifest file: its objects and what the API is expected to answer."""

    path: Path
    objects: list[dict[str, Any]]
    expect: str | None
    stage: str

    @property
    def id(self) -> str:
        """A short test id."""
        return str(self.path.relative_to(EXAMPLES))


def load_example(path: Path) -> Example:
    """Parse a manifest and its leading comment annotations."""
    text = path.read_text()
    expect, stage = None, "api"
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        key, _, value = line.lstrip("# ").partition(":")
        if key == "expect":
            expect = value.strip()
        elif key == "stage":
            stage = value.strip()
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    return Example(path=path, objects=objects, expect=expect, stage=stage)


def valid_examples() -> list[Example]:
    """Every manifest outside `examples/invalid/`."""
    return [
        load_example(p)
        for p in sorted(EXAMPLES.rglob("*.yaml"))
        if not {"invalid", "gitops"} & set(p.relative_to(EXAMPLES).parts)
    ]


def invalid_examples() -> list[Example]:
    """Every manifest under `examples/invalid/`."""
    return [load_example(p) for p in sorted((EXAMPLES / "invalid").glob("*.yaml"))]


def committed_crds() -> dict[str, dict[str, Any]]:
    """The CRDs in `crds/`, by kind."""
    crds = {}
    for path in sorted(CRDS.glob("*.yaml")):
        (crd,) = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds
