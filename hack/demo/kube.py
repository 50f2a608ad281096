"""kubectl and helm for the story (the pinned binaries), and reading pod logs on the local node."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class CommandFailed(RuntimeError):
    """kubectl or helm exited non-zero."""


@dataclass(frozen=True)
class Kube:
    """kubectl/helm bound to a kubeconfig and a namespace."""

    kubectl_binary: str
    helm_binary: str
    kubeconfig: Path
    namespace: str

    def run(self, *args: str, stdin: str | None = None, namespaced: bool = True) -> str:
        """kubectl; its stdout."""
        argv = [self.kubectl_binary, f"--kubeconfig={self.kubeconfig}"]
        if namespaced:
            argv.append(f"--namespace={self.namespace}")
        result = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            raise CommandFailed(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def json(self, *args: str, namespaced: bool = True) -> Any:
        """kubectl ... -o json, decoded."""
        return json.loads(self.run(*args, "-o", "json", namespaced=namespaced))

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """One object, or None."""
        try:
            return dict(self.json("get", kind, name))
        except CommandFailed:
            return None

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply of one object."""
        self.run("apply", "--server-side", "-f", "-", stdin=json.dumps(obj))

    def helm(self, *args: str) -> str:
        """helm; its stdout."""
        argv = [self.helm_binary, *args, f"--kubeconfig={self.kubeconfig}"]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            raise CommandFailed(f"helm {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def pod_logs(self, selector: str, lines: int = 30) -> str:
        """The last lines of the pods' logs (the local node keeps them beside the kubeconfig)."""
        found = []
        for pod in self.json("get", "pods", "-l", selector)["items"]:
            uid = pod["metadata"]["uid"]
            for path in sorted((self.kubeconfig.parent / "node" / "pods" / uid / "logs").glob("*")):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                found.append(f"--- {pod['metadata']['name']} {path.name}\n" + "\n".join(tail))
        return "\n".join(found) or f"(no logs for {selector})"
