"""Dynamic provisioning of PersistentVolumes backed by host directories (like kind's local-path).

The agent installs a default StorageClass `flywheel-local` (provisioner `flywheel.dev/local-path`,
`WaitForFirstConsumer`). For each claim the PV controller hands to this provisioner - once the
scheduler has picked our node for `WaitForFirstConsumer` - it creates a hostPath PersistentVolume
pre-bound to the claim, in this node's volumes directory; the controller manager binds them.
Released volumes are deleted, with their directory, by the node that holds it. All pods that mount
a claim share its directory.

A volume that may be mounted by one node only (`ReadWriteOnce`, `ReadWriteOncePod`,
`ReadOnlyMany` on a node's local disk) carries node affinity to the node it was provisioned on,
as local-path does: the scheduler puts every pod that uses it there. A `ReadWriteMany` volume has
none and is mounted on any node (the nodes share the host's disk, as nodes share an NFS export).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from devcluster.node.api import Api, ApiError

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PROVISIONER = "flywheel.dev/local-path"
STORAGE_CLASS = "flywheel-local"


def render_storage_class() -> Obj:
    """The default StorageClass of the local cluster."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
    }


def wants_volume(pvc: Obj, node_name: str) -> bool:
    """Whether this provisioner should create a volume for the claim now."""
    meta, spec = pvc["metadata"], pvc.get("spec", {})
    annotations = meta.get("annotations", {})
    provisioner = annotations.get("volume.kubernetes.io/storage-provisioner") or annotations.get(
        "volume.beta.kubernetes.io/storage-provisioner"
    )
    selected = annotations.get("volume.kubernetes.io/selected-node")
    return (
        provisioner == PROVISIONER
        and not spec.get("volumeName")
        and pvc.get("status", {}).get("phase", "Pending") == "Pending"
        and selected in (None, node_name)
        and not meta.get("deletionTimestamp")
    )


def render_volume(pvc: Obj, path: Path, node_name: str) -> Obj:
    """A hostPath PersistentVolume pre-bound to the claim; bound to `node_name` unless the
    claim asks for ReadWriteMany."""
    meta, spec = pvc["metadata"], pvc["spec"]
    modes = spec.get("accessModes", ["ReadWriteOnce"])
    volume: Obj = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
        },
        "spec": {
            "capacity": {
                "storage": spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            },
            "accessModes": modes,
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName", STORAGE_CLASS),
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(path), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
            },
        },
    }
    if "ReadWriteMany" not in modes:
        volume["spec"]["nodeAffinity"] = {
            "required": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": "kubernetes.io/hostname",
                                "operator": "In",
                                "values": [node_name],
                            }
                        ]
                    }
                ]
            }
        }
    return volume


class Provisioner:
    """Creates and deletes host-directory volumes."""

    def __init__(self, api: Api, root: Path, node_name: str) -> None:
        self.api = api
        self.root = root
        self.node_name = node_name

    async def install_class(self) -> None:
        """Create the default StorageClass if missing."""
        if (
            await self.api.get_or_none(f"/apis/storage.k8s.io/v1/storageclasses/{STORAGE_CLASS}")
            is None
        ):
            await self.api.create("/apis/storage.k8s.io/v1/storageclasses", render_storage_class())

    async def on_claim(self, pvc: Obj) -> None:
        """Provision a volume for a claim that waits for one."""
        if not wants_volume(pvc, self.node_name):
            return
        meta = pvc["metadata"]
        path = self.root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}"
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o777)  # shared by pods running as any user, like local-path-provisioner
        try:
            await self.api.create(
                "/api/v1/persistentvolumes", render_volume(pvc, path, self.node_name)
            )
            log.info("provisioned %s for %s/%s", path, meta["namespace"], meta["name"])
        except ApiError as error:
            if error.status != 409:
                raise
            # Another node provisioned it first (a claim without a selected node).
            if not any(path.iterdir()):
                path.rmdir()

    async def on_volume(self, pv: Obj) -> None:
        """Delete a released volume of ours, and its directory."""
        annotations = pv["metadata"].get("annotations", {})
        if annotations.get("pv.kubernetes.io/provisioned-by") != PROVISIONER:
            return
        if pv.get("status", {}).get("phase") != "Released":
            return
        path = Path(pv["spec"].get("hostPath", {}).get("path", ""))
        if not path.is_relative_to(self.root):
            return  # another node's volume: that node deletes it
        shutil.rmtree(path, ignore_errors=True)
        await self.api.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
