"""Reading the model registry: one model's ModelVersions, for every controller that needs them."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from flywheel.api import API_GROUP, API_VERSION
from flywheel.kube import Kube, namespaced


async def model_versions(kube: Kube, namespace: str, model: str) -> list[dict[str, Any]]:
    """The ModelVersions of `model` (selected by label, checked by spec)."""
    selector = quote(f"{API_GROUP}/model={model}")
    found = await kube.get(
        namespaced(f"{API_GROUP}/{API_VERSION}", namespace, "modelversions")
        + f"?labelSelector={selector}"
    )
    return [v for v in found.get("items", []) if v.get("spec", {}).get("model") == model]
