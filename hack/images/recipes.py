"""What is built: the two product images, from their real Dockerfiles, under the references
the chart (`charts/flywheel/values.yaml`, tag = appVersion) and the operator
(`flywheel.settings`: job_image, serving_image) use. A test keeps the three in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VERSION = "0.1.0"
OPERATOR_REF = f"ghcr.io/flywheel-dev/flywheel-operator:{VERSION}"
SERVING_REF = f"ghcr.io/flywheel-dev/flywheel-serving:{VERSION}"


@dataclass(frozen=True)
class Recipe:
    """One image: its name in progress lines, reference, Dockerfile and build context."""

    name: str
    ref: str
    dockerfile: Path
    context: Path = REPO
    build_args: dict[str, str] = field(default_factory=dict)


def default_recipes() -> tuple[Recipe, ...]:
    """The operator image (operator, ingest and training Jobs) and the serving image."""
    args = {"VERSION": VERSION}
    return (
        Recipe("operator", OPERATOR_REF, REPO / "operator" / "Dockerfile", build_args=args),
        Recipe("serving", SERVING_REF, REPO / "serving" / "Dockerfile", build_args=args),
    )
