"""Kubeconfig files for the local cluster's admin and its components."""

from __future__ import annotations

import base64
from pathlib import Path

import yaml

from devcluster.pki import KeyPair


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(path: Path, *, server: str, ca: Path, client: KeyPair, user: str) -> Path:
    """A kubeconfig with embedded credentials, readable only by its owner."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "flywheel-local",
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [
            {"name": "flywheel-local", "context": {"cluster": "flywheel-local", "user": user}}
        ],
        "current-context": "flywheel-local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
