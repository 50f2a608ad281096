"""The loop as stages: data → train → validate → deploy → traffic → drift → retrain → redeploy.

Each stage waits on the real objects and returns what it saw; a stage that stalls raises
:class:`Stalled` with the object's conditions and the relevant pods' logs. `make demo` narrates
the stages, tests/e2e asserts on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from demo import manifests
from demo.data import dataset_csv
from demo.kube import Kube
from demo.source import DataSource
from demo.traffic import Traffic

T = TypeVar("T")
Obj = dict[str, Any]
OPERATOR = "app.kubernetes.io/component=operator"


class Stalled(RuntimeError):
    """A stage did not finish in time; the message has the evidence."""


def condition(obj: Obj | None, type_: str) -> Obj:
    """A condition of an object, or {}."""
    for item in ((obj or {}).get("status") or {}).get("conditions") or ():
        if item.get("type") == type_:
            return dict(item)
    return {}


@dataclass
class Story:
    """One run of the story in `kube.namespace`, with its data source on `source_host`."""

    kube: Kube
    source_host: str
    rows: int = 3000
    seed: int = 7
    say: Callable[[str], None] = print
    tick: Callable[[], None] = lambda: None
    """Called at every poll of a wait (the demo refreshes its status line)."""
    source: DataSource | None = None
    traffic: Traffic | None = None
    seen: dict[str, Any] = field(default_factory=dict)

    def wait(
        self, what: str, probe: Callable[[], T | None], timeout: float, evidence: tuple[str, ...]
    ) -> T:
        """Poll `probe` until truthy; on timeout raise Stalled with the objects' conditions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = probe()
            if found:
                return found
            self.tick()
            time.sleep(0.5)
        raise Stalled(f"{what}: not done after {timeout:.0f}s\n{self.evidence(*evidence)}")

    def evidence(self, *objects: str) -> str:
        """Conditions of `kind/name` objects, then the operator's and serving pods' logs."""
        lines = []
        for ref in objects:
            kind, _, name = ref.partition("/")
            obj = self.kube.get(kind, name)
            lines.append(f"{ref}: {'absent' if obj is None else ''}")
            for c in ((obj or {}).get("status") or {}).get("conditions") or ():
                lines.append(f"  {c['type']}={c['status']} {c.get('reason')}: {c.get('message')}")
        lines.append(self.kube.pod_logs(OPERATOR))
        return "\n".join(lines)

    # --- stages --------------------------------------------------------------------------

    def start_source(self) -> str:
        """Serve era-0 data; the URL pods read it from."""
        self.source = DataSource().start()
        self.source.publish(dataset_csv(self.rows, 0, self.seed))
        return f"http://{self.source_host}:{self.source.port}/customers.csv"

    def apply(self, url: str) -> None:
        """The four user objects."""
        for obj in (
            manifests.dataset(url),
            manifests.training_run(),
            manifests.model_deployment(),
            manifests.model_monitor(),
        ):
            self.kube.apply(obj)

    def dataset_version(self, after: str | None = None, timeout: float = 180) -> Obj:
        """The Dataset once Ready on a version other than `after`."""

        def ready() -> Obj | None:
            obj = self.kube.get("dataset", "customers")
            version = ((obj or {}).get("status") or {}).get("version")
            if condition(obj, "Ready").get("status") == "True" and version and version != after:
                return obj
            return None

        return self.wait("the Dataset's version", ready, timeout, ("dataset/customers",))

    def trained(self, run: str, timeout: float = 300) -> Obj:
        """The run's ModelVersion once judged (Validated True or False)."""

        def done() -> Obj | None:
            obj = self.kube.get("trainingrun", run)
            ref = ((obj or {}).get("status") or {}).get("modelVersionRef") or {}
            version = self.kube.get("modelversion", ref["name"]) if ref.get("name") else None
            return version if condition(version, "Validated").get("status") else None

        return self.wait(f"TrainingRun {run}", done, timeout, (f"trainingrun/{run}",))

    def serving(self, version: int, timeout: float = 240) -> Obj:
        """The ModelDeployment once serving `version` on all replicas."""

        def done() -> Obj | None:
            md = self.kube.get("modeldeployment", "churn")
            status = (md or {}).get("status") or {}
            complete = status.get("servingVersion") == version and not status.get("targetVersion")
            return md if complete and condition(md, "Ready").get("status") == "True" else None

        return self.wait(f"serving v{version}", done, timeout, ("modeldeployment/churn",))

    def start_traffic(self) -> Traffic:
        """Steady era-0 traffic."""
        self.traffic = Traffic(self.kube, "churn-serving", "churn").start()
        return self.traffic

    def shift(self) -> None:
        """The world changes: traffic and the source both move to era 1."""
        assert self.traffic is not None
        assert self.source is not None
        self.traffic.era = 1
        self.source.publish(dataset_csv(self.rows, 1, self.seed))

    def monitor(self) -> Obj | None:
        """The ModelMonitor."""
        return self.kube.get("modelmonitor", "churn")

    def evaluated(self, after: float, timeout: float = 90) -> Obj:
        """The monitor once it evaluated a window that ends after `after` (epoch seconds)."""

        def fresh() -> Obj | None:
            mm = self.monitor() or {}
            when = ((mm.get("status") or {}).get("lastEvaluation") or {}).get("time")
            stamp = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp() if when else 0
            return mm if stamp > after else None

        return self.wait("an evaluation", fresh, timeout, ("modelmonitor/churn",))

    def drift_detected(self, timeout: float = 120) -> Obj:
        """The monitor once DriftDetected=True."""

        def seen() -> Obj | None:
            mm = self.monitor()
            return mm if condition(mm, "DriftDetected").get("status") == "True" else None

        return self.wait("DriftDetected", seen, timeout, ("modelmonitor/churn",))

    def retraining_runs(self) -> list[Obj]:
        """The monitor's TrainingRuns."""
        runs = self.kube.json("get", "trainingruns", "-l", "flywheel.dev/modelmonitor=churn")
        return list(runs["items"])

    def retrain_started(self, timeout: float = 180) -> Obj:
        """The retraining run, once created."""

        def created() -> Obj | None:
            runs = self.retraining_runs()
            return runs[0] if runs else None

        return self.wait(
            "the retraining TrainingRun",
            created,
            timeout,
            ("modelmonitor/churn", "dataset/customers"),
        )

    def stop(self) -> None:
        """Stop traffic and the data source."""
        if self.traffic is not None:
            self.traffic.stop()
        if self.source is not None:
            self.source.stop()
