"""The adversarial corpus against the real cluster: every case in tests/cluster/adversarial/
(specs, updates, status and scale writes, deletions, hand-made and forged objects) ends in the
API server's refusal or a named condition reason within 30 s of its last step, the real kstatus
library agrees with the state the case intends, and the operator never logs a traceback.

One operator watches one namespace for the whole module. Cases marked `needs: world` run
against a trained and served model built once first (see `world`): the forged-ModelVersion and
incompatible-version stories need one. All selected cases then run at once (see
tests/support/adversarial.py); each case is one test, so a failure names its case and shows the
object's conditions and the operator's log lines about it.
"""

from __future__ import annotations

import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.cluster.conftest import OperatorProcess, launch_operator, stop_operator
from tests.cluster.lifecycle import QUICKSTART, run_manifest
from tests.support.adversarial import Case, Outcome, Runner, census, load_cases
from tests.support.kube import Kubectl, fresh_namespace

CORPUS = load_cases()
FAST_RF = {"class": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}}
WORLD_TIMEOUT = "300s"


# The namespace, the operator, a web server pods can reach ---------------------------------------


@pytest.fixture(scope="module")
def adv_namespace(kubectl: Kubectl) -> Iterator[str]:
    """One namespace for the whole corpus (names are unique per case)."""
    name = f"t-adversarial-{uuid.uuid4().hex[:8]}"
    with fresh_namespace(kubectl, name):
        yield name


@pytest.fixture(scope="module")
def adv_k(kubectl: Kubectl, adv_namespace: str) -> Kubectl:
    """kubectl in the corpus's namespace."""
    return kubectl.in_namespace(adv_namespace)


@pytest.fixture(scope="module")
def adv_operator(
    kubectl: Kubectl, adv_namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """`python -m flywheel --namespace <the corpus's namespace>`, for the whole module."""
    log = tmp_path_factory.mktemp("adversarial") / "operator.log"
    handle = launch_operator(kubectl.kubeconfig, adv_namespace, log)
    try:
        yield handle
    finally:
        stop_operator(handle)


FILES = {
    "good.csv": b"a,b,target\n"
    + b"".join(f"{i},{(i * 7) % 11},{i % 2}\n".encode() for i in range(40)),
    "empty.csv": b"",
    "header-only.csv": b"sepal,petal,target\n",
    "junk.csv": bytes(range(128, 256)) * 64,
    "ragged.csv": b"a,b,target\n1,2,0\n3,4,1\n5,6,7,8\n9,10,1\n",
    "text-in-numbers.csv": b"age,city,target\n"
    + b"".join(
        f"{a},{c},{i % 2}\n".encode()
        for i, (a, c) in enumerate(
            [("31", "Paris"), ("45", "Lyon"), ("forty-two", "Paris"), ("27", "Nice")] * 5
        )
    ),
    "one-class.csv": b"a,b,target\n" + b"".join(f"{i},{i % 3},1\n".encode() for i in range(20)),
    "infinite.csv": b"a,b,target\n1,inf,0\n2,3,1\n4,5,0\n6,-inf,1\n",
    "identifiers.csv": b"id,b,target\n"
    + b"".join(f"user-{i},{i % 3},{i % 2}\n".encode() for i in range(40)),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    """`/status/<code>/...` answers that status, `/loop/...` redirects to itself, `/files/<name>`
    serves FILES."""

    def do_GET(self) -> None:
        parts = self.path.strip("/").split("/")
        if parts[0] == "status" and len(parts) > 1 and parts[1].isdigit():
            self._answer(int(parts[1]), b'{"error": "as asked"}')
        elif parts[0] == "loop":
            self.send_response(302)
            self.send_header("Location", self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif parts[0] == "files" and len(parts) == 2 and parts[1] in FILES:
            self._answer(200, FILES[parts[1]])
        else:
            self._answer(404, b"not found")

    def _answer(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def web(adv_k: Kubectl) -> Iterator[str]:
    """An HTTP server on the node's address (the pods' bridge gateway), with bad answers."""
    (node,) = adv_k.json("get", "nodes")["items"]
    address = next(a["address"] for a in node["status"]["addresses"] if a["type"] == "InternalIP")
    server = http.server.ThreadingHTTPServer((address, 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{address}:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


# The world: trained, validated and served models ----------------------------------------------


def _deployment(name: str, model: str) -> dict[str, Any]:
    return {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "policy": "LatestValidated",
            "replicas": 1,
            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}},
        },
    }


WORLD_MODELS = {
    "iris": "iris-rf-1",
    "iris-b": "iris-b-rf-1",
    "iris-c": "iris-c-rf-1",
    "iris-d": "iris-d-rf-1",
}
"""Model → the run that trains its v1. `iris` and `iris-b` are served by LatestValidated
ModelDeployments of the same names (the incompatible-version stories, one model each); cases
serve `iris`, `iris-c` and `iris-d` v1 from ModelDeployments of their own (`iris-d-v1` is
deleted by one)."""


def build_world(k: Kubectl) -> dict[str, Any]:
    """Datasets iris (quick start) and diabetes (a regression label), v1 of each world model
    trained and validated, `iris` and `iris-b` served; every object by kind and name."""
    k.apply((QUICKSTART / "01-dataset.yaml").read_text())
    diabetes = {
        "apiVersion": "flywheel.dev/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "diabetes"},
        "spec": {"source": {"uri": "sklearn://diabetes"}, "schema": {"label": "target"}},
    }
    k.apply(diabetes)
    for model, run in WORLD_MODELS.items():
        spec = {} if model == "iris" else {"model": model, "estimator": FAST_RF}
        k.apply(run_manifest(run, **spec))
    k(
        "wait",
        "--for=condition=Ready",
        f"--timeout={WORLD_TIMEOUT}",
        "dataset/iris",
        "dataset/diabetes",
    )
    runs = [f"trainingrun/{run}" for run in WORLD_MODELS.values()]
    k("wait", "--for=condition=Succeeded", f"--timeout={WORLD_TIMEOUT}", *runs)
    versions = [f"modelversion/{model}-v1" for model in WORLD_MODELS]
    k("wait", "--for=condition=Validated", "--timeout=120s", *versions)
    for model in ("iris", "iris-b"):
        k.apply(_deployment(model, model))
    for model in ("iris", "iris-b"):
        k(
            "wait",
            "--for=jsonpath={.status.servingVersion}=1",
            f"--timeout={WORLD_TIMEOUT}",
            f"modeldeployment/{model}",
        )
    k(
        "wait",
        "--for=condition=Ready",
        "--timeout=120s",
        "modeldeployment/iris",
        "modeldeployment/iris-b",
    )
    world: dict[str, Any] = {}
    kinds = "datasets,trainingruns,modelversions,modeldeployments"
    for obj in k.json("get", kinds)["items"]:
        world.setdefault(obj["kind"].lower(), {})[obj["metadata"]["name"]] = obj
    return world


# The batch --------------------------------------------------------------------------------------


@dataclass
class Batch:
    """The corpus's run: each case's outcome and what it took."""

    outcomes: dict[str, Outcome]
    world_seconds: float
    cases_seconds: float


def _selected(request: pytest.FixtureRequest) -> list[Case]:
    """The cases whose tests were selected (all of them unless `-k` narrowed it)."""
    names = set()
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if isinstance(item, pytest.Function) and item.module is request.module and callspec:
            case = callspec.params.get("case")
            if isinstance(case, Case):
                names.add(case.name)
    return [case for case in CORPUS if case.name in names]


@pytest.fixture(scope="module")
def batch(
    request: pytest.FixtureRequest,
    adv_k: Kubectl,
    adv_operator: OperatorProcess,
    web: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Batch:
    """Build the world if a selected case needs it, then run every selected case at once."""
    cases = _selected(request)
    started = time.monotonic()
    world = build_world(adv_k) if any(c.needs_world for c in cases) else {}
    world_seconds = time.monotonic() - started
    context = {"ns": adv_k.namespace, "web": web, "world": world}
    started = time.monotonic()
    outcomes = Runner(adv_k, context).run(cases)
    cases_seconds = time.monotonic() - started
    passed = sum(o.passed for o in outcomes.values())
    slowest = sorted(
        (o for o in outcomes.values() if o.seconds is not None), key=lambda o: -(o.seconds or 0)
    )[:8]
    report = tmp_path_factory.mktemp("adversarial-report") / "outcomes.txt"
    report.write_text(
        "".join(
            f"{'PASS' if o.passed else 'FAIL'} {o.case.name}: "
            + o.detail.replace("\n", "\n    ")
            + "\n"
            for o in outcomes.values()
        )
    )
    print(
        f"\nadversarial corpus: {len(cases)} cases ({census(cases)}); {passed} passed; "
        f"world {world_seconds:.0f}s, cases {cases_seconds:.0f}s; slowest: "
        + ", ".join(f"{o.case.name} {o.seconds:.0f}s" for o in slowest)
        + f"; each case's outcome: {report}"
    )
    return Batch(outcomes, world_seconds, cases_seconds)


def _names(case: Case) -> set[str]:
    """The object names a case touches (for picking its lines out of the operator log)."""
    found: set[str] = set()
    for step in case.steps:
        verb, body = next(iter(step.items()))
        if verb == "apply":
            found.add(str(body["metadata"]["name"]))
        elif isinstance(body, dict):
            for key in ("target", "object", "exists"):
                if isinstance(body.get(key), str) and "/" in body[key]:
                    found.add(body[key].split("/", 1)[1])
        elif isinstance(body, str):
            found.add(body.split("/", 1)[1])
    for expect in case.expect:
        ref = getattr(expect, "ref", None)
        if ref is not None:
            found.add(ref.name)
    return found


def _log_about(operator: OperatorProcess, case: Case, limit: int = 40) -> str:
    names = _names(case)
    lines = operator.output().splitlines()
    picked = [line for line in lines if any(f"/{n}:" in line or f"/{n} " in line for n in names)]
    return "\n".join(picked[-limit:]) or "(nothing about its objects)"


# The tests --------------------------------------------------------------------------------------


def test_the_corpus_has_at_least_60_cases() -> None:
    assert len(CORPUS) >= 60, census(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda c: c.name)
def test_case(case: Case, batch: Batch, adv_operator: OperatorProcess) -> None:
    outcome = batch.outcomes[case.name]
    if not outcome.passed:
        pytest.fail(
            f"{case.name}: {case.about}\n{outcome.detail}\n"
            f"--- operator log about its objects ---\n{_log_about(adv_operator, case)}",
            pytrace=False,
        )


def test_the_operator_logged_no_traceback(batch: Batch, adv_operator: OperatorProcess) -> None:
    assert adv_operator.process.poll() is None, "the operator exited"
    log = adv_operator.output()
    if "Traceback" in log:
        lines = log.splitlines()
        first = next(i for i, line in enumerate(lines) if "Traceback" in line)
        count = sum("Traceback" in line for line in lines)
        excerpt = "\n".join(lines[max(first - 3, 0) : first + 40])
        pytest.fail(
            f"{count} traceback(s) in the operator log; the first:\n{excerpt}", pytrace=False
        )
