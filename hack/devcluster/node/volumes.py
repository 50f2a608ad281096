"""Pod volumes materialised on the host, ready to be bind-mounted into containers.

emptyDir, configMap, secret, downwardAPI and projected volumes (including the service-account
token from the TokenRequest API, which in-cluster clients need) are written into the pod's
directory; persistentVolumeClaim and hostPath volumes resolve to an existing host directory.
Contents are written once at pod start (the kubelet's periodic refresh is not emulated).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.node.api import Api
from devcluster.node.env import ContainerConfigError, field_value, resource_value

Obj = dict[str, Any]


@dataclass(frozen=True)
class HostVolume:
    """A volume's host path and whether the volume itself is read-only."""

    path: Path
    read_only: bool = False


class VolumeError(ContainerConfigError):
    """A volume cannot be prepared (missing object, unbound claim)."""


async def prepare_volumes(
    api: Api, pod: Obj, root: Path, host: tuple[int, int]
) -> dict[str, HostVolume]:
    """Every volume of the pod, materialised under `root`."""
    namespace = pod["metadata"]["namespace"]
    volumes: dict[str, HostVolume] = {}
    for volume in pod["spec"].get("volumes", []):
        name = volume["name"]
        target = root / name
        if "emptyDir" in volume:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)  # as the kubelet does: any container user may write
            volumes[name] = HostVolume(target)
        elif "persistentVolumeClaim" in volume:
            source = volume["persistentVolumeClaim"]
            path = await claim_path(api, namespace, source["claimName"])
            volumes[name] = HostVolume(path, bool(source.get("readOnly")))
        elif "hostPath" in volume:
            volumes[name] = HostVolume(Path(volume["hostPath"]["path"]))
        else:
            files = await _files(api, pod, volume, host)
            _write(target, files, default_mode=_default_mode(volume))
            volumes[name] = HostVolume(target, read_only=True)
    return volumes


async def claim_path(api: Api, namespace: str, claim: str) -> Path:
    """The host directory behind a bound PersistentVolumeClaim."""
    pvc = await api.get_or_none(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
    if pvc is None:
        raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
    volume_name = pvc.get("spec", {}).get("volumeName")
    if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
        raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound')
    pv = await api.get(f"/api/v1/persistentvolumes/{volume_name}")
    spec = pv["spec"]
    path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
    if not path:
        raise VolumeError(f"persistentvolume {volume_name} has no host path")
    Path(path).mkdir(parents=True, exist_ok=True)
    return Path(path)


def _default_mode(volume: Obj) -> int:
    for kind in ("configMap", "secret", "downwardAPI", "projected"):
        if kind in volume:
            return int(volume[kind].get("defaultMode", 0o644))
    return 0o644


async def _files(api: Api, pod: Obj, volume: Obj, host: tuple[int, int]) -> dict[str, bytes]:
    """Relative path -> content for configMap/secret/downwardAPI/projected volumes."""
    if "configMap" in volume or "secret" in volume:
        return await _object_files(api, pod, volume)
    if "downwardAPI" in volume:
        return _downward_files(pod, volume["downwardAPI"].get("items", []), host)
    if "projected" in volume:
        files: dict[str, bytes] = {}
        for source in volume["projected"].get("sources", []):
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                files[token["path"]] = (await _token(api, pod, token)).encode()
            elif "downwardAPI" in source:
                files.update(_downward_files(pod, source["downwardAPI"].get("items", []), host))
            else:
                files.update(await _object_files(api, pod, source))
        return files
    kinds = sorted(set(volume) - {"name"})
    raise VolumeError(f"volume {volume['name']}: unsupported source {kinds}")


async def _object_files(api: Api, pod: Obj, source: Obj) -> dict[str, bytes]:
    kind = "configMap" if "configMap" in source else "secret"
    ref = source[kind]
    name = ref.get("name") or ref.get("secretName", "")
    resource = "configmaps" if kind == "configMap" else "secrets"
    path = f"/api/v1/namespaces/{pod['metadata']['namespace']}/{resource}/{name}"
    obj = await api.get_or_none(path)
    if obj is None:
        if ref.get("optional"):
            return {}
        raise VolumeError(f'{kind.lower()} "{name}" not found')
    data: dict[str, bytes] = {}
    for key, value in obj.get("data", {}).items():
        data[key] = base64.b64decode(value) if kind == "secret" else str(value).encode()
    for key, value in obj.get("binaryData", {}).items():
        data[key] = base64.b64decode(value)
    items = ref.get("items")
    if not items:
        return data
    missing = [i["key"] for i in items if i["key"] not in data]
    if missing and not ref.get("optional"):
        raise VolumeError(f"{kind} {name} has no key {missing[0]}")
    return {i["path"]: data[i["key"]] for i in items if i["key"] in data}


def _downward_files(pod: Obj, items: list[Obj], host: tuple[int, int]) -> dict[str, bytes]:
    files = {}
    for item in items:
        if "fieldRef" in item:
            value = field_value(pod, item["fieldRef"]["fieldPath"])
        else:
            container = next(
                c
                for c in pod["spec"]["containers"]
                if c["name"] == item["resourceFieldRef"].get("containerName", c["name"])
            )
            value = resource_value(container, item["resourceFieldRef"], *host)
        files[item["path"]] = value.encode()
    return files


async def _token(api: Api, pod: Obj, source: Obj) -> str:
    meta = pod["metadata"]
    account = pod["spec"].get("serviceAccountName") or "default"
    request = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [source["audience"]] if source.get("audience") else [],
            "expirationSeconds": int(source.get("expirationSeconds", 3607)),
            "boundObjectRef": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }
    path = f"/api/v1/namespaces/{meta['namespace']}/serviceaccounts/{account}/token"
    answer = await api.create(path, request)
    return str(answer["status"]["token"])


def _write(directory: Path, files: dict[str, bytes], *, default_mode: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    for relative, content in files.items():
        target = directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        os.chmod(target, default_mode)
