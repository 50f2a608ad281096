"""A small kubectl wrapper for cluster tests: real API calls through the pinned kubectl."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class KubectlError(AssertionError):
    """kubectl exited non-zero; carries its stderr."""

    def __init__(self, args: list[str], stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} failed:\n{stderr}")
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    """kubectl bound to a kubeconfig and (optionally) a namespace."""

    binary: str
    kubeconfig: Path
    namespace: str | None = None

    def in_namespace(self, namespace: str) -> Kubectl:
        """The same client, defaulting to another namespace."""
        return Kubectl(self.binary, self.kubeconfig, namespace)

    def run(
        self, *args: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; raise KubectlError on failure when `check`."""
        argv = [self.binary, f"--kubeconfig={self.kubeconfig}"]
        if self.namespace:
            argv.append(f"--namespace={self.namespace}")
        result = subprocess.run(
            [*argv, *args], input=stdin, capture_output=True, text=True, timeout=300
        )
        if check and result.returncode != 0:
            raise KubectlError(list(args), result.stderr)
        return result

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl and return stdout."""
        return self.run(*args, stdin=stdin).stdout

    def json(self, *args: str) -> Any:
        """Run kubectl with `-o json` and parse the output."""
        return json.loads(self(*args, "-o", "json"))

    def apply(self, manifest: str | dict[str, Any], *extra: str) -> str:
        """`kubectl apply -f -` of a YAML/JSON text or an object."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        return self("apply", "-f", "-", *extra, stdin=text)

    def rejected(self, manifest: str | dict[str, Any], *args: str) -> str:
        """Apply a manifest that must be refused; the error text."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        result = self.run(*(args or ("apply", "-f", "-")), stdin=text, check=False)
        assert result.returncode != 0, f"accepted but should be refused:\n{result.stdout}"
        return result.stderr


def eventually(probe: Callable[[], T | None], *, timeout: float = 60, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """A condition of an object, by type."""
    for item in obj.get("status", {}).get("conditions", []):
        if item.get("type") == type_:
            return dict(item)
    return None


@contextmanager
def fresh_namespace(kubectl: Kubectl, name: str) -> Iterator[Kubectl]:
    """Create namespace `name`, wait for its default ServiceAccount (pods can be admitted), yield
    kubectl defaulting to it, delete it afterwards (without waiting)."""
    kubectl("create", "namespace", name)
    eventually(
        lambda: (
            kubectl.run("get", "serviceaccount", "default", "-n", name, check=False).returncode == 0
        ),
        what=f"the default ServiceAccount in {name}",
    )
    try:
        yield kubectl.in_namespace(name)
    finally:
        kubectl("delete", "namespace", name, "--wait=false")


def finished_pod(k: Kubectl, name: str, *, timeout: float = 90) -> dict[str, Any]:
    """The pod object once its phase is Succeeded or Failed."""

    def done() -> dict[str, Any] | None:
        pod: dict[str, Any] = k.json("get", "pod", name)
        return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    return eventually(done, timeout=timeout, what=f"pod {name} to finish")
