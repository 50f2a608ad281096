"""The adversarial corpus (tests/cluster/adversarial/*.yaml): loading, and running it as one batch
against the real cluster.

A case is one YAML file:

    about: one line saying what is thrown at the operator
    needs: world            # optional: a trained, served model must exist first
    steps:                  # run in order; every step but a refused last one must succeed
      - apply: {kind: Dataset, metadata: {name: x}, spec: {...}}     # created
      - patch: {target: Kind/name, type: merge|json, patch: {...}, subresource: status|scale}
      - delete: Kind/name            # or {kind: Job, selector: label=value}
      - wait: {object: Kind/name, condition: Type, status: "True", reason: Reason}
      - wait: {exists: Kind/name}    # or {exists: Kind, selector: label=value}
    expect:                 # one of these, or {either: [one, another]}
      rejected: fragment of the API server's message (to the last step)
      # or
      object: Kind/name
      condition: Type
      status: "True"
      reason: Reason
      kstatus: InProgress | Current | Failed | Terminating
      message: optional fragment of the condition's message
      recreated: optional Kind/name deleted by a step that must exist again (another uid)

`apiVersion` defaults to flywheel.dev/v1alpha1 for our kinds; every object lands in the test's
namespace. A case may end with a `wait` when its story needs work done first that no operator
can hurry (a training Job): the budget then counts from the end of that wait.

A string that is exactly `${a.b.c}` is replaced by that value of the context (any type:
`${world.modelversion.iris-v1.spec.lineage}` copies a mapping); `${...}` inside a longer string
is replaced by its text; `${repeat:<text>:<count>}` is `text` repeated. `wait` steps prepare a
case (up to WAIT_SECONDS); the expectation must hold within BUDGET_SECONDS of the last step:
its condition (written for the object's current generation) and the real kstatus library's
verdict on the same object, read at the same moment.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from tests.support.kstatus import KStatus, kstatus
from tests.support.kube import Kubectl

CASES = Path(__file__).resolve().parents[1] / "cluster" / "adversarial"
BUDGET_SECONDS = 30.0
WAIT_SECONDS = 300.0
"""Setup waits (a run training first, under the load of the whole batch); not the budget."""
POLL_SECONDS = 1.0
API_VERSION = "flywheel.dev/v1alpha1"
OUR_KINDS = ("Dataset", "TrainingRun", "ModelVersion", "ModelDeployment", "ModelMonitor")
WATCHED = {
    **{kind: f"{kind.lower()}s.flywheel.dev" for kind in OUR_KINDS},
    "Job": "jobs.batch",
    "Deployment": "deployments.apps",
}
"""What the poller reads (one request per round): every kind a case can name."""
KSTATUSES = ("InProgress", "Current", "Failed", "Terminating")
TOKEN = re.compile(r"\$\{([^}]+)\}")


class CaseError(ValueError):
    """A case file that does not follow the format."""


# The format ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """`Kind/name`."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True)
class Rejected:
    """The API server refuses the last step with a message containing `fragment`."""

    fragment: str


@dataclass(frozen=True)
class Reaches:
    """An object reaches a condition (for its current generation) and a kstatus verdict."""

    ref: Ref
    condition: str
    status: str
    reason: str
    kstatus: str
    message: str | None = None
    recreated: Ref | None = None

    def describe(self) -> str:
        """One line for reports."""
        text = f"{self.ref} {self.condition}={self.status} {self.reason}, kstatus {self.kstatus}"
        if self.message:
            text += f", message containing {self.message!r}"
        if self.recreated:
            text += f", {self.recreated} recreated"
        return text


Expectation = Rejected | Reaches


@dataclass(frozen=True)
class Case:
    """One adversarial case."""

    name: str
    about: str
    needs_world: bool
    steps: tuple[dict[str, Any], ...]
    expect: tuple[Expectation, ...]
    """Alternatives: the case passes when one of them holds."""

    @property
    def kind(self) -> str:
        """The kind the case is about: its expected object's, else its last step's."""
        for expect in self.expect:
            if isinstance(expect, Reaches):
                return expect.ref.kind
        verb, body = next(iter(self.steps[-1].items()))
        if verb == "apply":
            return str(body["kind"])
        if verb == "patch":
            return parse_ref(body["target"]).kind
        target = body if isinstance(body, str) else body.get("target") or body["kind"]
        return parse_ref(target).kind if "/" in str(target) else str(target)

    @property
    def heavy(self) -> bool:
        """Whether the case makes the operator start Jobs (ingest or training): such cases run a
        few at a time, so that every one has its budget on a machine that is not saturated."""
        if all(isinstance(e, Rejected) for e in self.expect):
            return False
        applied = {s["apply"]["kind"] for s in self.steps if "apply" in s}
        return "Dataset" in applied or (self.needs_world and "TrainingRun" in applied)

    @property
    def klass(self) -> str:
        """What the case throws: a spec, an update, a status or scale write, a deletion, a
        hand-made or forged object."""
        verbs = [next(iter(s)) for s in self.steps if next(iter(s)) != "wait"]
        if "delete" in verbs:
            return "deletion"
        last = self.steps[-1]
        if "patch" in last:
            sub = last["patch"].get("subresource")
            return f"{sub} write" if sub else "update"
        applied = {s["apply"]["kind"] for s in self.steps if "apply" in s}
        if applied & {"ModelVersion", "Job"} and not all(
            isinstance(e, Rejected) for e in self.expect
        ):
            return "hand-made/forged"
        return "spec"


def parse_ref(text: str) -> Ref:
    """`Kind/name` → Ref."""
    kind, sep, name = str(text).partition("/")
    if not sep or not kind or not name:
        raise CaseError(f"{text!r} is not Kind/name")
    return Ref(kind, name)


STEP_KEYS = {
    "apply": None,
    "patch": {"target", "type", "patch", "subresource"},
    "delete": {"target", "kind", "selector"},
    "wait": {"object", "condition", "status", "reason", "exists", "selector"},
}
EXPECT_KEYS = {
    "rejected",
    "object",
    "condition",
    "status",
    "reason",
    "kstatus",
    "message",
    "recreated",
}


def _expectation(raw: Any, where: str) -> Expectation:
    if not isinstance(raw, dict):
        raise CaseError(f"{where}: expect must be a mapping")
    unknown = set(raw) - EXPECT_KEYS
    if unknown:
        raise CaseError(f"{where}: unknown expect keys {sorted(unknown)}")
    if "rejected" in raw:
        if set(raw) != {"rejected"}:
            raise CaseError(f"{where}: `rejected` stands alone")
        return Rejected(str(raw["rejected"]))
    missing = {"object", "condition", "status", "reason", "kstatus"} - set(raw)
    if missing:
        raise CaseError(f"{where}: expect lacks {sorted(missing)}")
    if raw["kstatus"] not in KSTATUSES:
        raise CaseError(f"{where}: kstatus must be one of {KSTATUSES}")
    if str(raw["status"]) not in ("True", "False", "Unknown"):
        raise CaseError(f"{where}: status must be the string True, False or Unknown")
    return Reaches(
        ref=parse_ref(raw["object"]),
        condition=str(raw["condition"]),
        status=str(raw["status"]),
        reason=str(raw["reason"]),
        kstatus=str(raw["kstatus"]),
        message=str(raw["message"]) if raw.get("message") else None,
        recreated=parse_ref(raw["recreated"]) if raw.get("recreated") else None,
    )


def _step(raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise CaseError(f"{where}: a step is a mapping with one of {sorted(STEP_KEYS)}")
    verb, body = next(iter(raw.items()))
    if verb not in STEP_KEYS:
        raise CaseError(f"{where}: unknown step {verb!r}")
    allowed = STEP_KEYS[verb]
    if verb == "apply":
        if (
            not isinstance(body, dict)
            or "kind" not in body
            or "name" not in body.get("metadata", {})
        ):
            raise CaseError(f"{where}: apply needs an object with kind and metadata.name")
    elif verb == "delete" and isinstance(body, str):
        parse_ref(body)
    elif not isinstance(body, dict) or (allowed is not None and set(body) - allowed):
        raise CaseError(f"{where}: {verb} takes {sorted(allowed or ())}")
    if verb == "patch" and (
        body.get("type", "merge") not in ("merge", "json")
        or body.get("subresource") not in (None, "status", "scale")
    ):
        raise CaseError(f"{where}: patch type is merge or json, subresource status or scale")
    return {verb: body}


def load_case(path: Path) -> Case:
    """One case file, checked; `${repeat:...}` is expanded at once (names may use it)."""
    raw = expand_repeats(yaml.safe_load(path.read_text()))
    where = path.name
    if not isinstance(raw, dict) or set(raw) - {"about", "needs", "steps", "expect"}:
        raise CaseError(f"{where}: a case has about, needs, steps and expect")
    about, steps, expect = raw.get("about"), raw.get("steps"), raw.get("expect")
    if not isinstance(about, str) or "\n" in about.strip():
        raise CaseError(f"{where}: about is one line")
    if not isinstance(steps, list) or not steps:
        raise CaseError(f"{where}: steps is a non-empty list")
    if raw.get("needs") not in (None, "world"):
        raise CaseError(f"{where}: needs is `world` or absent")
    alternatives = expect.get("either") if isinstance(expect, dict) else None
    if alternatives is not None and set(cast(dict[str, Any], expect)) != {"either"}:
        raise CaseError(f"{where}: `either` stands alone")
    parsed = tuple(
        _expectation(e, where) for e in (alternatives if alternatives is not None else [expect])
    )
    if "wait" in steps[-1] and any(isinstance(e, Rejected) for e in parsed):
        raise CaseError(f"{where}: a refusal is the answer to a last step that is not a wait")
    return Case(
        name=path.stem,
        about=about.strip(),
        needs_world=raw.get("needs") == "world",
        steps=tuple(_step(s, f"{where} step {i + 1}") for i, s in enumerate(steps)),
        expect=parsed,
    )


def load_cases(directory: Path = CASES) -> list[Case]:
    """Every case, by file name; object names must not collide between cases."""
    cases = [load_case(p) for p in sorted(directory.glob("*.yaml"))]
    owners: dict[str, str] = {}
    for case in cases:
        for step in case.steps:
            if "apply" in step:
                body = step["apply"]
                ref = f"{body['kind']}/{body['metadata']['name']}"
                if owners.setdefault(ref, case.name) != case.name:
                    raise CaseError(f"{ref} is applied by {owners[ref]} and {case.name}")
    return cases


# Substitution ----------------------------------------------------------------------------------


def lookup(context: Mapping[str, Any], path: str) -> Any:
    """`a.b.c` in nested mappings (keys may hold dashes); `repeat:<text>:<count>` is `text`
    repeated (for values too large to write out)."""
    if path.startswith("repeat:"):
        _, text, count = path.split(":", 2)
        return text * int(count)
    value: Any = context
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise CaseError(f"${{{path}}}: no {part!r} in the context")
        value = value[part]
    return value


def expand_repeats(value: Any) -> Any:
    """`value` with its `${repeat:...}` tokens expanded (and every other token left)."""
    if isinstance(value, str):
        return TOKEN.sub(
            lambda m: lookup({}, m.group(1)) if m.group(1).startswith("repeat:") else m.group(0),
            value,
        )
    if isinstance(value, list):
        return [expand_repeats(v) for v in value]
    if isinstance(value, dict):
        return {k: expand_repeats(v) for k, v in value.items()}
    return value


def substitute(value: Any, context: Mapping[str, Any]) -> Any:
    """`value` with `${...}` tokens replaced from `context` (see the module docstring)."""
    if isinstance(value, str):
        whole = TOKEN.fullmatch(value)
        if whole:
            return json.loads(json.dumps(lookup(context, whole.group(1))))
        return TOKEN.sub(lambda m: str(lookup(context, m.group(1))), value)
    if isinstance(value, list):
        return [substitute(v, context) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, context) for k, v in value.items()}
    return value


# Matching --------------------------------------------------------------------------------------


Objects = dict[tuple[str, str], dict[str, Any]]
"""A snapshot of the namespace: (kind, name) → object."""


def find_condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """A condition by type."""
    for item in (obj.get("status") or {}).get("conditions") or ():
        if item.get("type") == type_:
            return dict(item)
    return None


def condition_holds(expect: Reaches, obj: Mapping[str, Any]) -> bool:
    """The expected condition, written for the object's current generation."""
    found = find_condition(obj, expect.condition)
    if found is None:
        return False
    generation = (obj.get("metadata") or {}).get("generation")
    observed = found.get("observedGeneration")
    return (
        found.get("status") == expect.status
        and found.get("reason") == expect.reason
        and (expect.message is None or expect.message in str(found.get("message", "")))
        and (observed is None or generation is None or observed == generation)
    )


def summary(obj: Mapping[str, Any] | None) -> str:
    """The object's conditions, one line each, for failure reports."""
    if obj is None:
        return "  (the object does not exist)"
    status = obj.get("status") or {}
    lines = [
        f"  generation {obj.get('metadata', {}).get('generation')}, "
        f"observedGeneration {status.get('observedGeneration')}"
    ]
    for c in status.get("conditions") or ():
        lines.append(
            f"  {c.get('type')}={c.get('status')} {c.get('reason')} "
            f"(gen {c.get('observedGeneration')}): {str(c.get('message', ''))[:300]}"
        )
    return "\n".join(lines)


# Running ---------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What happened to one case."""

    case: Case
    passed: bool = False
    detail: str = ""
    seconds: float | None = None
    """From the last step to the expectation holding."""
    steps_done: float | None = None
    """monotonic() when the last step finished."""
    rejection: str | None = None
    """The last step's error, when it was refused."""
    error: str | None = None
    """A step that failed before the last one, or a wait that timed out."""
    last_seen: dict[str, str] = field(default_factory=dict)
    """What the poller last saw of each expected object (conditions, kstatus)."""
    uids: dict[str, str] = field(default_factory=dict)
    """UIDs of objects deleted by steps."""
    slot: bool = False
    """Whether the case holds one of the runner's slots for heavy cases."""


class Snapshots:
    """The namespace's objects, read in one request per round by one thread."""

    def __init__(self, k: Kubectl) -> None:
        self.k = k
        self.objects: Objects = {}
        self.taken = 0.0
        self.rounds = 0
        self.lock = threading.Condition()

    def refresh(self) -> None:
        """Read every watched kind once."""
        started = time.monotonic()
        result = self.k.run("get", ",".join(WATCHED.values()), "-o", "json", check=False)
        if result.returncode != 0:
            return  # an API hiccup: the next round reads again
        objects = {
            (str(o["kind"]), str(o["metadata"]["name"])): o
            for o in json.loads(result.stdout)["items"]
        }
        with self.lock:
            self.objects, self.taken = objects, started
            self.rounds += 1
            self.lock.notify_all()

    def after(self, moment: float, timeout: float) -> tuple[float, Objects] | None:
        """The first snapshot taken after `moment`, with the time its read started (None if
        none within `timeout`)."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.taken <= moment:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.lock.wait(left)
            return self.taken, self.objects


def _kubectl_ref(ref: Ref) -> str:
    return f"{WATCHED.get(ref.kind, ref.kind.lower())}/{ref.name}"


class Runner:
    """Runs cases at once: their steps in threads, their expectations against shared snapshots."""

    def __init__(
        self,
        k: Kubectl,
        context: Mapping[str, Any],
        *,
        budget: float = BUDGET_SECONDS,
        heavy_at_once: int = 2,
        compute: Callable[[list[dict[str, Any]]], list[KStatus]] = kstatus,
    ) -> None:
        self.k = k
        self.context = context
        self.budget = budget
        self.compute = compute
        self.slots = threading.Semaphore(heavy_at_once)
        self.snapshots = Snapshots(k)
        self._stop = threading.Event()

    # Steps (in the case's thread)

    def _apply(self, body: dict[str, Any]) -> None:
        obj = dict(body)
        if obj["kind"] in OUR_KINDS:
            obj.setdefault("apiVersion", API_VERSION)
        obj["metadata"] = {**obj["metadata"], "namespace": self.k.namespace}
        # `create`, as a first `kubectl apply` does: the API server's own messages, and no
        # last-applied annotation (which alone would refuse a large spec).
        self._kubectl("create", "-f", "-", stdin=json.dumps(obj))

    def _kubectl(self, *args: str, stdin: str | None = None) -> None:
        result = self.k.run(*args, stdin=stdin, check=False)
        if result.returncode != 0:
            raise StepRefused(result.stderr.strip() or result.stdout.strip())

    def _step(self, outcome: Outcome, step: dict[str, Any]) -> None:
        verb, body = next(iter(step.items()))
        if verb == "apply":
            self._apply(body)
        elif verb == "patch":
            ref = parse_ref(body["target"])
            args = ["patch", _kubectl_ref(ref), f"--type={body.get('type', 'merge')}"]
            if body.get("subresource"):
                args.append(f"--subresource={body['subresource']}")
            self._kubectl(*args, "-p", json.dumps(body["patch"]))
        elif verb == "delete":
            self._delete(outcome, body)
        elif verb == "wait":
            self._wait(body)

    def _delete(self, outcome: Outcome, body: str | dict[str, Any]) -> None:
        if isinstance(body, dict) and body.get("selector"):
            kind = WATCHED.get(str(body["kind"]), str(body["kind"]))
            self._kubectl("delete", kind, "-l", str(body["selector"]), "--wait=false")
            return
        ref = parse_ref(body if isinstance(body, str) else body["target"])
        found = self.k.run("get", _kubectl_ref(ref), "-o", "jsonpath={.metadata.uid}", check=False)
        if found.returncode == 0:
            outcome.uids[str(ref)] = found.stdout.strip()
        self._kubectl("delete", _kubectl_ref(ref), "--wait=false")

    def _wait(self, body: dict[str, Any]) -> None:
        started = time.monotonic()
        deadline = started + WAIT_SECONDS
        moment = started
        while True:
            seen = self.snapshots.after(moment, max(deadline - time.monotonic(), 0.1))
            if seen is None:
                raise StepRefused(f"wait {body} timed out after {WAIT_SECONDS:.0f}s")
            moment, objects = seen
            if _waited(body, objects):
                return
            if time.monotonic() > deadline:
                raise StepRefused(f"wait {body} timed out after {WAIT_SECONDS:.0f}s")

    def _run_steps(self, outcome: Outcome) -> None:
        if outcome.case.heavy:
            self.slots.acquire()
            outcome.slot = True
        try:
            steps = substitute(list(outcome.case.steps), self.context)
            for index, step in enumerate(steps):
                last = index == len(steps) - 1
                try:
                    self._step(outcome, step)
                except StepRefused as refused:
                    if last:
                        outcome.rejection = str(refused)
                    else:
                        outcome.error = f"step {index + 1} ({next(iter(step))}) failed: {refused}"
                    break
        except Exception as error:  # a broken case must not hang the batch
            outcome.error = f"{type(error).__name__}: {error}"
        finally:
            outcome.steps_done = time.monotonic()

    # Expectations (in the poller)

    def run(self, cases: Iterable[Case], *, workers: int = 64) -> dict[str, Outcome]:
        """Run every case; their outcomes by name. Heavy cases are started first."""
        ordered = sorted(cases, key=lambda c: not c.heavy)
        outcomes = {case.name: Outcome(case) for case in ordered}
        poller = threading.Thread(target=self._poll_forever, daemon=True)
        poller.start()
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(self._run_steps, o) for o in outcomes.values()]
                self._judge(outcomes)
                for future in futures:
                    future.result()
        finally:
            self._stop.set()
            poller.join(timeout=30)
        return outcomes

    def _poll_forever(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.snapshots.refresh()
            self._stop.wait(max(POLL_SECONDS - (time.monotonic() - started), 0.05))

    def _judge(self, outcomes: dict[str, Outcome]) -> None:
        pending = dict(outcomes)
        moment = time.monotonic()
        while pending:
            seen = self.snapshots.after(moment, timeout=60)
            if seen is None:
                raise RuntimeError("the poller stopped reading the cluster")
            moment, objects = seen
            candidates: list[tuple[Outcome, Reaches, dict[str, Any]]] = []
            for outcome in list(pending.values()):
                if outcome.steps_done is None or outcome.steps_done >= moment:
                    continue  # still stepping, or this snapshot may predate its last step
                if self._settled_without_polling(outcome):
                    self._settle(pending, outcome)
                    continue
                for expect in outcome.case.expect:
                    if not isinstance(expect, Reaches):
                        continue
                    obj = objects.get((expect.ref.kind, expect.ref.name))
                    outcome.last_seen[str(expect.ref)] = summary(obj)
                    if (
                        obj is not None
                        and condition_holds(expect, obj)
                        and (expect.recreated is None or _recreated(outcome, expect, objects))
                    ):
                        candidates.append((outcome, expect, obj))
            verdicts = self.compute([obj for _, _, obj in candidates]) if candidates else []
            for (outcome, expect, _), verdict in zip(candidates, verdicts, strict=True):
                said = f"  kstatus {verdict.status}: {verdict.message}"
                outcome.last_seen[str(expect.ref)] += "\n" + said
                if verdict.status == expect.kstatus and not outcome.passed:
                    assert outcome.steps_done is not None
                    outcome.passed = True
                    outcome.seconds = moment - outcome.steps_done
                    outcome.detail = f"{expect.describe()} after {outcome.seconds:.1f}s"
                    self._settle(pending, outcome)
            for outcome in list(pending.values()):
                done = outcome.steps_done
                if done is not None and moment - done > self.budget:
                    outcome.detail = self._failure(outcome) + _children(outcome.case, objects)
                    self._settle(pending, outcome)

    def _settle(self, pending: dict[str, Outcome], outcome: Outcome) -> None:
        pending.pop(outcome.case.name, None)
        if outcome.slot:
            outcome.slot = False
            self.slots.release()

    def _settled_without_polling(self, outcome: Outcome) -> bool:
        """Cases decided by their steps alone (a refusal, an accepted refusal, a broken step)."""
        case = outcome.case
        if outcome.error is not None:
            outcome.detail = f"the case could not be set up: {outcome.error}"
            return True
        rejections = [e for e in case.expect if isinstance(e, Rejected)]
        if outcome.rejection is not None:
            match = next((e for e in rejections if e.fragment in outcome.rejection), None)
            if match is not None:
                outcome.passed = True
                outcome.detail = f"refused: {outcome.rejection}"
            elif rejections:
                outcome.detail = (
                    f"refused, but without {[e.fragment for e in rejections]}: {outcome.rejection}"
                )
            else:
                outcome.detail = f"the last step was refused: {outcome.rejection}"
            return True
        if rejections and not any(isinstance(e, Reaches) for e in case.expect):
            outcome.detail = "accepted, but the API server should have refused it"
            return True
        return False

    def _failure(self, outcome: Outcome) -> str:
        wanted = " or ".join(
            e.describe() if isinstance(e, Reaches) else f"a refusal with {e.fragment!r}"
            for e in outcome.case.expect
        )
        seen = "\n".join(f"{ref}:\n{text}" for ref, text in outcome.last_seen.items())
        accepted = "" if outcome.rejection else " (the API server accepted every step)"
        return (
            f"not within {self.budget:.0f}s of the last step{accepted}: wanted {wanted}; "
            f"last seen:\n{seen}"
        )


class StepRefused(Exception):
    """kubectl refused a step (its stderr), or a wait timed out."""


def _waited(body: Mapping[str, Any], objects: Objects) -> bool:
    if "exists" in body:
        target = str(body["exists"])
        if "/" in target:
            ref = parse_ref(target)
            return (ref.kind, ref.name) in objects
        selector = dict(s.split("=", 1) for s in str(body.get("selector", "")).split(",") if s)
        return any(
            kind == target
            and all((o["metadata"].get("labels") or {}).get(k) == v for k, v in selector.items())
            for (kind, _), o in objects.items()
        )
    ref = parse_ref(str(body["object"]))
    obj = objects.get((ref.kind, ref.name))
    found = find_condition(obj, str(body["condition"])) if obj else None
    return (
        found is not None
        and found.get("status") == str(body.get("status", "True"))
        and ("reason" not in body or found.get("reason") == body["reason"])
    )


def _recreated(outcome: Outcome, expect: Reaches, objects: Objects) -> bool:
    assert expect.recreated is not None
    obj = objects.get((expect.recreated.kind, expect.recreated.name))
    old = outcome.uids.get(str(expect.recreated))
    return obj is not None and old is not None and obj["metadata"].get("uid") != old


def applied_names(case: Case) -> set[str]:
    """The names of the objects a case applies."""
    return {str(s["apply"]["metadata"]["name"]) for s in case.steps if "apply" in s}


def _children(case: Case, objects: Objects) -> str:
    """The Jobs and Deployments named after the case's objects, with their state."""
    names = applied_names(case)
    lines = []
    for (kind, name), obj in sorted(objects.items()):
        if kind in ("Job", "Deployment") and any(name.startswith(n) for n in names):
            status = obj.get("status") or {}
            conditions = [
                f"{c.get('type')}={c.get('status')} {c.get('reason', '')}"
                for c in status.get("conditions") or ()
            ]
            counts = {k: v for k, v in status.items() if isinstance(v, int)}
            lines.append(f"  {kind}/{name}: {counts} {conditions}")
    return ("\nchildren:\n" + "\n".join(lines)) if lines else ""


def census(cases: Iterable[Case]) -> str:
    """How many cases per kind and per class, as a short table."""
    by_kind: dict[str, int] = {}
    by_class: dict[str, int] = {}
    for case in cases:
        by_kind[case.kind] = by_kind.get(case.kind, 0) + 1
        by_class[case.klass] = by_class.get(case.klass, 0) + 1
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items()))
    classes = ", ".join(f"{k} {n}" for k, n in sorted(by_class.items()))
    return f"by kind: {kinds}; by class: {classes}"
