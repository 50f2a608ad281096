"""What the operator benchmark runs on: a cluster that audits the operator, the operator's own
identity, and an operator process (this checkout, or a commit extracted from git)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import load_audit as audit
import yaml

from devcluster.binaries import Binaries
from devcluster.controlplane import Cluster

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Operator:
    """A running operator process."""

    label: str
    process: subprocess.Popen[bytes]
    log: Path

    def peak_rss_mb(self) -> float:
        """VmHWM of the process."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def audited_cluster(work: Path, binaries: Binaries) -> Cluster:
    """A cluster whose API server audits the operator's ServiceAccount."""
    return Cluster(work / "cluster", binaries, apiserver_args=audit.apiserver_args(work / "audit"))


def kubectl(cluster: Cluster, *args: str, stdin: str | None = None) -> str:
    """kubectl as the cluster's admin."""
    result = subprocess.run(
        [cluster.binaries.path("kubectl"), f"--kubeconfig={cluster.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


def operator_kubeconfig(cluster: Cluster, work: Path) -> Path:
    """A kubeconfig for the operator's own ServiceAccount (cluster-admin: the benchmark
    measures work, not RBAC), so the audit log can tell its requests apart."""
    kubectl(cluster, "create", "namespace", audit.SYSTEM)
    kubectl(cluster, "-n", audit.SYSTEM, "create", "serviceaccount", audit.ACCOUNT)
    kubectl(
        cluster,
        "create",
        "clusterrolebinding",
        "flywheel-bench-operator",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={audit.SYSTEM}:{audit.ACCOUNT}",
    )
    token = kubectl(
        cluster, "-n", audit.SYSTEM, "create", "token", audit.ACCOUNT, "--duration=6h"
    ).strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "operator", "user": {"token": token}}],
        "contexts": [
            {
                "name": "operator",
                "context": {"cluster": admin["clusters"][0]["name"], "user": "operator"},
            }
        ],
        "current-context": "operator",
    }
    path = work / "operator.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def baseline_source(commit: str, work: Path) -> Path:
    """The operator package of a commit, extracted from git (no checkout needed)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "operator"], capture_output=True, check=True
    ).stdout
    target = work / f"baseline-{commit}"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "operator"


def start_operator(
    label: str, kubeconfig: Path, namespaces: list[str], work: Path, source: Path | None
) -> Operator:
    """`python -m flywheel` watching `namespaces`, from `source` (default: this checkout)."""
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "FLYWHEEL_LIVENESS_PORT": "0",
        "FLYWHEEL_METRICS_PORT": "0",
    }
    if source is not None:
        env["PYTHONPATH"] = f"{source}:{ROOT / 'serving'}"
    log = work / f"operator-{label}.log"
    argv = [sys.executable, "-m", "flywheel"]
    for namespace in namespaces:
        argv += ["--namespace", namespace]
    with log.open("wb") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=work)
    return Operator(label, process, log)
