"""The one reconcile loop: a work queue per kind, workers, and gather → decide → act.

Each object is reconciled by one worker at a time (:mod:`.queue`). A reconcile reads the object
from the watch cache, parses it once (an invalid spec becomes `InvalidSpec` without reaching the
controller), gathers, decides and acts; the outcome's `requeue_after` queues it again later.
Failures are told apart:

- the API server did not answer (refused, reset, timed out, 429, 5xx): one warning line naming
  the object and the cause, retried after 0.5 s, doubling to 5 s: a restarted API server is
  caught up with within seconds;
- a create lost a race for its name, or a conditional patch its object's version: decided
  again after 50 ms, on fresh reads;
- RBAC refused a call: `Ready=False` with reason `Forbidden` and the API server's sentence,
  retried every 30 s;
- anything else (the API refused a write, or a bug): logged with the cause (a traceback only
  for a bug), retried from 1 s doubling to 5 minutes.

Every log line names the object as `Kind namespace/name`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.core.admission import (
    forbidden_outcome,
    invalid_spec_outcome,
    legacy_cleanup,
    name_taken_outcome,
)
from flywheel.core.claims import claim_finding, unavailable
from flywheel.core.outcome import Outcome
from flywheel.core.resources import CLAIMS
from flywheel.core.target import InvalidSpec, parse_target
from flywheel.kube.errors import Forbidden, KubeError, Unavailable
from flywheel.opmetrics import OperatorMetrics
from flywheel.runtime.act import Abandon, Actor, Log, NameTaken
from flywheel.runtime.controller import Controller, Env
from flywheel.runtime.queue import Backoff, WorkQueue

logger = logging.getLogger("flywheel")
Key = tuple[str, str]
TRANSIENT = Backoff(base=0.5, cap=5.0)
ERRORS = Backoff(base=1.0, cap=300.0)
FORBIDDEN_RETRY = 30.0
AGAIN = 0.05
BRIEF = 1.0
"""Seconds a reconcile in progress keeps the reports (statuses, Events) waiting."""
"""Seconds before a decision that lost a race is taken again (the watch catches up meanwhile)."""
Clock = Callable[[], datetime]


class ObjectLog(logging.LoggerAdapter[logging.Logger]):
    """Log lines that start with `Kind namespace/name:`."""

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        """Prefix the message."""
        return f"{self.extra['object'] if self.extra else ''}: {msg}", kwargs


def now_utc() -> datetime:
    """The real clock."""
    return datetime.now(UTC)


class Reconciler:
    """One kind's queue and workers."""

    def __init__(
        self,
        controller: Controller[Any],
        env: Env,
        actor: Actor,
        metrics: OperatorMetrics,
        *,
        workers: int = 4,
        clock: Clock = now_utc,
    ) -> None:
        self.controller = controller
        self.env = env
        self.actor = actor
        self.metrics = metrics
        self.workers = workers
        self.clock = clock
        self.queue: WorkQueue[Key] = WorkQueue(backoff=TRANSIENT)
        self.kind = controller.kind.kind

    def enqueue(self, namespace: str, name: str) -> None:
        """Reconcile this object soon."""
        self.queue.add((namespace, name))

    @property
    def busy(self) -> bool:
        """Work is waiting, or a reconcile started less than `BRIEF` ago (the reports wait
        meanwhile; one slow reconcile, a monitor waiting on Prometheus, holds nothing up)."""
        return len(self.queue) > 0 or self.queue.started_within(BRIEF) > 0

    def refused(self, namespace: str, name: str, error: KubeError) -> None:
        """The API server refused to write the object's status (written behind the reconcile,
        :mod:`.reports`): reconcile it again, as if the reconcile had failed."""
        key = (namespace, name)
        if isinstance(error, Forbidden):
            self.queue.add_after(key, FORBIDDEN_RETRY)
        else:
            self.queue.retry(key, ERRORS)
        self.metrics.errors.labels(kind=self.kind, reason=type(error).__name__).inc()

    def log(self, namespace: str, name: str) -> ObjectLog:
        """The logger of one object."""
        return ObjectLog(logger, {"object": f"{self.kind} {namespace}/{name}"})

    async def run(self) -> None:
        """Work until cancelled."""
        tasks = [asyncio.create_task(self._work()) for _ in range(self.workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.close()
            for task in tasks:
                task.cancel()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.handle(key)
            finally:
                self.queue.done(key)

    async def handle(self, key: Key) -> str:
        """Reconcile one key, record the result, schedule what comes next; the result."""
        log = self.log(*key)
        with self.metrics.timed(self.kind):
            result = await self._attempt(key, log)
        self.metrics.reconciles.labels(kind=self.kind, result=result).inc()
        return result

    async def _attempt(self, key: Key, log: Log) -> str:
        try:
            requeue, result = await self.reconcile(*key, log)
        except Unavailable as error:
            delay = self.queue.retry(key)
            log.warning("the API server did not answer (%s); retrying in %.1fs", error, delay)
            return "retry"
        except Abandon as error:
            log.info("%s: deciding again", error)
            self.queue.add_after(key, AGAIN)
            return "retry"
        except Forbidden as error:
            await self._forbidden(key, error, log)
            self.queue.add_after(key, FORBIDDEN_RETRY)
            return "forbidden"
        except NameTaken as taken:
            sentence = str(taken)
            log.warning("%s", sentence)
            await self._report(key, lambda status: name_taken_outcome(sentence, status), log)
            self.queue.add_after(key, FORBIDDEN_RETRY)
            return "name_taken"
        except KubeError as error:
            delay = self.queue.retry(key, ERRORS)
            log.error("the API server refused: %s; retrying in %.0fs", error, delay)
            self.metrics.errors.labels(kind=self.kind, reason=type(error).__name__).inc()
            return "error"
        except Exception as error:
            delay = self.queue.retry(key, ERRORS)
            log.exception("reconcile failed; retrying in %.0fs", delay)
            self.metrics.errors.labels(kind=self.kind, reason=type(error).__name__).inc()
            return "error"
        self.queue.forget(key)
        if requeue is not None:
            self.queue.add_after(key, requeue.total_seconds())
        return result

    async def reconcile(
        self, namespace: str, name: str, log: Log | None = None
    ) -> tuple[timedelta | None, str]:
        """gather → decide → act for one object: (when to look again, the result)."""
        log = log or self.log(namespace, name)
        body = self.env.store.get(self.controller.resource, namespace, name)
        if body is None:
            self.controller.forget(namespace, name)
            self.queue.drop((namespace, name))
            return None, "gone"
        cleanup = legacy_cleanup(body)
        if cleanup is not None:
            await self.actor.perform(cleanup, log)
            body = self.env.store.get(self.controller.resource, namespace, name) or body
        target = parse_target(self.controller.kind, body)
        if target.meta.deleting and not self.controller.finalizes:
            return None, "deleting"
        now = self.clock()
        if isinstance(target, InvalidSpec):
            outcome = invalid_spec_outcome(
                target.finding,
                target.raw_status,
                target.meta.generation,
                self.controller.kind.outcome_condition,
            )
            if outcome.events:
                log.warning("%s", target.finding.message)
            await self.actor.act(body, self.kind, outcome, now, log, valid=False)
            return None, "invalid_spec"
        if self.controller.needs_artifacts(target):
            claim_name = self.env.settings.artifacts_claim
            claim = self.env.store.get(CLAIMS, target.meta.namespace, claim_name)
            finding = claim_finding(claim, claim_name)
            if finding is not None:
                await self.actor.act(
                    body, self.kind, unavailable(finding, target.raw_status), now, log
                )
                return None, "artifacts_unavailable"
        inputs = await self.controller.gather(self.env, target, now)
        outcome = self.controller.decide(inputs, now)
        await self.actor.act(body, self.kind, outcome, now, log)
        self.controller.observe(target, outcome)
        return outcome.requeue_after, "success"

    async def _forbidden(self, key: Key, error: Forbidden, log: Log) -> None:
        log.warning("the operator is not allowed to do its work: %s", error.sentence)
        await self._report(key, lambda status: forbidden_outcome(error.sentence, status), log)

    async def _report(
        self, key: Key, outcome_of: Callable[[dict[str, Any]], Outcome], log: Log
    ) -> None:
        """Write an outcome the reconcile could not reach (it raised) on the object."""
        body = self.env.store.get(self.controller.resource, *key)
        if body is None:
            return
        outcome = outcome_of(body.get("status") or {})
        try:
            await self.actor.act(body, self.kind, outcome, self.clock(), log)
        except KubeError as again:
            log.warning("cannot report it on the object either: %s", again)
