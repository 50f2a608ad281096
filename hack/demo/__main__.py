"""`make demo`: the whole Flywheel loop on the local cluster, narrated as it happens.

Brings up (or reuses) the local cluster in `.cluster/`, installs the operator with the Helm
chart (in-cluster, as a pod), and plays the story of :mod:`demo.story` in the namespace
`flywheel-demo`, watching the real objects: Dataset version → TrainingRun → ModelVersion
validated → deployment Ready with live traffic → the world shifts → drift scores rise →
DriftDetected → the Dataset refreshes → a retraining run → the new version validated against
the champion → rolled out with zero failed requests. Ends with the lineage chain and the
commands to explore. A stage that stalls fails loudly with the object's conditions and pod logs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from demo.kube import CommandFailed, Kube
from demo.story import Stalled, Story, condition
from devcluster.binaries import ensure_binaries
from devcluster.controlplane import Cluster

NAMESPACE = "flywheel-demo"
SYSTEM = "flywheel-system"
CHART = Path("charts/flywheel")
BOLD, DIM, GREEN, YELLOW, RESET = "\033[1m", "\033[2m", "\033[32m", "\033[33m", "\033[0m"


class Narrator:
    """Stage lines, and one status line refreshed in place while a stage waits."""

    def __init__(self, story: Story, started: float) -> None:
        self.story, self.started, self.last = story, started, 0.0

    def stage(self, text: str) -> None:
        """A finished step."""
        print(f"\r\033[K{GREEN}✔{RESET} {self._clock()} {text}", flush=True)

    def _clock(self) -> str:
        elapsed = int(time.monotonic() - self.started)
        return f"{DIM}[{elapsed // 60:02d}:{elapsed % 60:02d}]{RESET}"

    def tick(self) -> None:
        """Refresh the status line (at most once a second)."""
        if time.monotonic() - self.last < 1:
            return
        self.last = time.monotonic()
        print(f"\r\033[K  {self._clock()} {DIM}{self._status()}{RESET}", end="", flush=True)

    def _status(self) -> str:
        kube, parts = self.story.kube, []
        try:
            for kind, name in (("dataset", "customers"), ("modeldeployment", "churn")):
                obj = kube.get(kind, name)
                ready = condition(obj, "Ready")
                parts.append(f"{kind}/{name} {ready.get('reason', '…')}")
            runs = kube.json("get", "trainingruns")["items"]
            for run in runs[-1:]:
                parts.append(f"run/{run['metadata']['name']} {_phase(run)}")
            monitor = self.story.monitor() or {}
            evaluation = (monitor.get("status") or {}).get("lastEvaluation") or {}
            if evaluation:
                top = max((f["score"] for f in evaluation.get("features") or []), default=0.0)
                parts.append(f"drift {evaluation.get('verdict')} max-psi {top:.2f}")
        except CommandFailed:
            parts.append("…")
        traffic = self.story.traffic
        if traffic is not None:
            rate, p50, p99 = traffic.rate_and_latency()
            parts.append(f"{rate:.0f} req/s p50 {p50:.1f} ms p99 {p99:.1f} ms")
        return " | ".join(parts)[:200]


def _phase(run: dict[str, Any]) -> str:
    succeeded = condition(run, "Succeeded")
    return str(succeeded.get("reason") or condition(run, "Ready").get("reason") or "Pending")


def _setup(kube: Kube, say: Narrator | None) -> None:
    for namespace, restricted in ((SYSTEM, True), (NAMESPACE, False)):
        if kube.get("namespace", namespace) is None:
            kube.run("create", "namespace", namespace, namespaced=False)
        if restricted:
            kube.run(
                "label", "--overwrite", "namespace", namespace,
                "pod-security.kubernetes.io/enforce=restricted", namespaced=False,
            )  # fmt: skip
    crd = kube.get("crd", "datasets.flywheel.dev")
    owned = crd is None or (crd["metadata"].get("annotations") or {}).get(
        "meta.helm.sh/release-name"
    )
    kube.helm(
        "upgrade", "--install", "flywheel", str(CHART), "--namespace", SYSTEM,
        "--set", f"crds.install={'true' if owned else 'false'}",
        "--wait", "--timeout", "300s",
    )  # fmt: skip


def _play(story: Story, say: Narrator) -> dict[str, Any]:
    url = story.start_source()
    say.stage(f"Data source serving {story.rows} rows of customer data at {url}")
    story.apply(url)
    say.stage(
        "Applied Dataset, TrainingRun, ModelDeployment (LatestValidated), ModelMonitor (Auto)"
    )
    first = story.dataset_version()
    status = first["status"]
    say.stage(f"Dataset customers: version {status['version']} ({status['rows']} rows, validated)")
    v1 = story.trained("churn-1")
    metrics = {k: round(v, 3) for k, v in (v1["spec"].get("metrics") or {}).items()}
    say.stage(f"TrainingRun churn-1 → ModelVersion churn-v1 validated, metrics {metrics}")
    story.serving(1)
    say.stage("ModelDeployment churn Ready: serving v1 on 2 pods")
    traffic = story.start_traffic()
    calm = story.evaluated(time.time() + 20)
    rate, p50, p99 = traffic.rate_and_latency()
    evaluation = calm["status"]["lastEvaluation"]
    top = max(f["score"] for f in evaluation.get("features") or [{"score": 0.0}])
    say.stage(
        f"Steady traffic: {rate:.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms; monitor "
        f"{evaluation['verdict']} over {evaluation['samples']} predictions (max PSI {top:.2f})"
    )
    if evaluation["verdict"] != "NoDrift":
        raise Stalled(f"drift on the training distribution: {evaluation}")
    story.shift()
    say.stage(f"{YELLOW}The world shifts{RESET}: prices up, support busier; new data at the source")
    drifting = story.drift_detected()
    evaluation = drifting["status"]["lastEvaluation"]
    scores = ", ".join(
        f"{f['name']} {f['score']:.2f}" for f in evaluation["features"] if f["drifted"]
    )
    say.stage(f"{YELLOW}DriftDetected{RESET}: PSI {scores}")
    second = story.dataset_version(after=status["version"])
    say.stage(f"Dataset refreshed on the monitor's request: version {second['status']['version']}")
    run = story.retrain_started()
    say.stage(f"Retraining TrainingRun {run['metadata']['name']} on the new version")
    v2 = story.trained(run["metadata"]["name"])
    if condition(v2, "Validated").get("status") != "True":
        raise Stalled(f"the retrained model was not validated: {condition(v2, 'Validated')}")
    accuracy = round((v2["spec"].get("metrics") or {}).get("accuracy", 0.0), 3)
    verdict = condition(v2, "Validated").get("message", "")
    say.stage(f"ModelVersion churn-v2 (accuracy {accuracy}) validated: {verdict}")
    story.serving(2)
    traffic.stop()
    say.stage(
        f"Rolled out v2: {traffic.answered} requests answered, {len(traffic.failures)} failed"
    )
    if traffic.failures:
        raise Stalled(f"requests failed during the story: {traffic.failures[:3]}")
    return {"first": first, "second": second, "v1": v1, "v2": v2, "run": run}


def _summary(kube: Kube, seen: dict[str, Any]) -> str:
    md = kube.get("modeldeployment", "churn") or {}
    lines = [f"\n{BOLD}Lineage{RESET}"]
    for label, data, version in (
        ("v1", seen["first"], seen["v1"]),
        ("v2", seen["second"], seen["v2"]),
    ):
        lineage = version["spec"]["lineage"]
        lines.append(
            f"  dataset customers {data['status']['digest'][:19]}… → run {lineage['trainingRun']}"
            f" → model churn-{label} sha256 {version['spec']['artifact']['sha256'][:12]}…"
        )
    lines.append(
        f"  → deployment churn serving v{md.get('status', {}).get('servingVersion')} at "
        f"{md.get('status', {}).get('endpoint')}"
    )
    lines += [
        f"\n{BOLD}Explore{RESET}",
        f"  export KUBECONFIG={kube.kubeconfig}",
        f"  kubectl get flywheel -n {NAMESPACE}",
        f"  kubectl describe modelmonitor churn -n {NAMESPACE}",
        f"  kubectl logs -n {NAMESPACE} job/{seen['v2']['spec']['lineage']['trainingRun']}-train"
        "   # the retraining Job",
        f"  kubectl logs -n {SYSTEM} deploy/flywheel --tail 20   # the operator",
        "  make demo-down   # stop the cluster",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; 0 when the whole story played."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--cluster-dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args(argv)
    started = time.monotonic()
    print(f"{BOLD}Flywheel demo{RESET}: data → train → validate → deploy → monitor → retrain")
    binaries = ensure_binaries()
    cluster = Cluster(directory=args.cluster_dir.resolve(), binaries=binaries)
    cluster.up()
    kube = Kube(binaries.path("kubectl"), binaries.path("helm"), cluster.kubeconfig, NAMESPACE)
    if kube.get("namespace", NAMESPACE) is not None:  # a fresh story every run
        kube.run(
            "delete", "namespace", NAMESPACE, "--wait=true", "--timeout=120s", namespaced=False
        )
    (node,) = kube.json("get", "nodes", namespaced=False)["items"]
    host = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    story = Story(kube, host)
    say = Narrator(story, started)
    story.tick = say.tick
    say.stage(f"Local cluster up (control plane + node {node['metadata']['name']})")
    _setup(kube, say)
    say.stage(f"Installed the operator with the Helm chart (a pod in {SYSTEM})")
    try:
        seen = _play(story, say)
    except Stalled as error:
        print(f"\n{BOLD}The demo stalled{RESET}: {error}", file=sys.stderr)
        return 1
    finally:
        story.stop()
    print(_summary(kube, seen))
    print(f"\nDone in {time.monotonic() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
