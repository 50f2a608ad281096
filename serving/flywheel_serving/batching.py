"""Adaptive batching: merge concurrent requests into one session run.

A request waits at most `max_latency` seconds for others; a batch runs as soon as it holds
`max_batch_size` rows. Requests larger than a batch run alone. Off by default: with a ~10 µs
model on one core, batching only pays off when many clients send single rows at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from flywheel_serving.model import Inputs, Prediction


class Batcher:
    """Collects requests and runs them together."""

    def __init__(
        self,
        run: Callable[[Inputs], Prediction],
        max_batch_size: int,
        max_latency: float,
        on_batch: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self._run = run
        self._max_rows = max_batch_size
        self._max_latency = max_latency
        self._on_batch = on_batch
        self._pending: list[tuple[Inputs, asyncio.Future[Prediction]]] = []
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None

    async def predict(self, inputs: Inputs) -> Prediction:
        """The prediction of one request, possibly computed with others."""
        if inputs.rows >= self._max_rows:
            self._on_batch(inputs.rows)
            return self._run(inputs)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((inputs, future))
        self._rows += inputs.rows
        if self._rows >= self._max_rows:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self._max_latency, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending, self._rows = self._pending, [], 0
        if not pending:
            return
        try:
            merged = Inputs.concatenate([inputs for inputs, _ in pending])
            self._on_batch(merged.rows)
            result = self._run(merged)
        except Exception as error:  # hand the failure to every waiting request
            for _, future in pending:
                if not future.done():
                    future.set_exception(error)
            return
        start = 0
        for inputs, future in pending:
            part = slice(start, start + inputs.rows)
            start += inputs.rows
            if not future.done():
                future.set_result(
                    Prediction(
                        None if result.labels is None else result.labels[part],
                        None if result.probabilities is None else result.probabilities[part],
                        None if result.values is None else result.values[part],
                    )
                )
