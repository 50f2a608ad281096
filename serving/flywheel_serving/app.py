"""The ASGI app: thin endpoints over the runtime and the data layer.

A raw ASGI callable rather than a framework: at a ~10 µs model the HTTP layer is the cost, and
routing a handful of fixed paths by hand keeps the server within reach of uvicorn's own floor.
The model loads in the background at start-up, so liveness answers at once while readiness waits
for load + sha256 verification + a warm-up inference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from flywheel_serving.batching import Batcher
from flywheel_serving.config import ServingConfig
from flywheel_serving.errors import (
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    ServingError,
    UnsupportedMediaType,
)
from flywheel_serving.metrics import CallbackCollector, ServingMetrics
from flywheel_serving.model import Inputs, Model, ModelLoadError, Prediction, load, resolve
from flywheel_serving.monitor_metrics import families, info_metric
from flywheel_serving.monitoring import Monitor
from flywheel_serving.openapi import document
from flywheel_serving.protocol import (
    HEADER_LENGTH,
    decode_feedback,
    decode_infer,
    decode_v1,
    encode_infer,
    encode_v1,
)
from flywheel_serving.signature import (
    SERVER_METADATA,
    Refused,
    check_outputs,
    model_metadata,
    outputs,
)

logger = logging.getLogger("flywheel_serving")
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = [(b"content-type", b"application/json")]
BINARY = b"application/octet-stream"
CLOSE = (b"connection", b"close")
OFFLOAD_ROWS = 512  # larger runs go to a thread, so one big request does not stall the loop


@dataclass
class Loaded:
    """The served model once it is verified."""

    model: Model
    sha256: str
    monitor: Monitor | None
    batcher: Batcher | None
    baseline: bytes | None = None
    """The baseline document the monitor bins on (served for the ModelMonitor)."""


class ServingApp:
    """One model behind the Open Inference Protocol v2."""

    def __init__(self, config: ServingConfig, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.metrics = ServingMetrics(config.model_name, config.model_version)
        self.loaded: Loaded | None = None
        self.failure: ModelLoadError | None = None
        self.draining = False
        self._loading: asyncio.Task[None] | None = None
        self._openapi = orjson.dumps(document(config.model_name))
        self._routes: dict[tuple[str, str], tuple[str, ServingApp.Handler]] = {}
        self._unobserved: list[tuple[Monitor, Inputs, Prediction]] = []
        self.registry.register(CallbackCollector(self._collect))

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Begin loading the model in the background."""
        self._loading = asyncio.create_task(self._load())

    async def _load(self) -> None:
        config = self.config
        try:
            model, sha256 = await asyncio.to_thread(
                load,
                config.model_uri,
                sha256=config.sha256,
                card_uri=config.card_uri,
                artifacts_root=config.artifacts_root,
                intra_op_threads=config.intra_op_threads,
            )
            monitor = None
            baseline = None
            if config.monitoring:
                baseline = await asyncio.to_thread(self._baseline)
                monitor = Monitor(
                    config.model_name,
                    config.model_version,
                    baseline,
                    features=[(f.name, f.type) for f in model.features],
                    class_labels=model.class_labels,
                )
        except ModelLoadError as error:
            self.failure = error
            logger.error("model %s not served: %s", config.model_name, error)
            return
        except Exception as error:  # an unexpected failure must not leave "Loading" forever
            self.failure = ModelLoadError("ModelLoadFailed", f"{type(error).__name__}: {error}")
            logger.exception("model %s not served", config.model_name)
            return
        batcher = None
        if config.max_batch_size > 0:
            batcher = Batcher(
                model.run,
                config.max_batch_size,
                config.max_latency_ms / 1000,
                self.metrics.batch.observe,
            )
        document = orjson.dumps(baseline) if baseline is not None else None
        self.loaded = Loaded(model, sha256, monitor, batcher, document)
        logger.info(
            "model %s version %s ready (sha256 %s, %d features, %s)",
            config.model_name,
            config.model_version,
            sha256,
            len(model.features),
            model.task,
        )

    def _baseline(self) -> dict[str, Any] | None:
        if not self.config.stats_uri:
            return None
        path = resolve(self.config.stats_uri, self.config.artifacts_root)
        try:
            baseline: dict[str, Any] = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            message = f"cannot read the baseline {path}: {error}"
            raise ModelLoadError("ModelLoadFailed", message) from error
        return baseline

    async def wait_loaded(self) -> None:
        """Until the background load has finished (successfully or not)."""
        if self._loading is not None:
            await self._loading

    def _collect(self) -> Any:
        yield from self.metrics.collect()
        loaded = self.loaded
        yield from info_metric(
            self.config.model_name,
            self.config.model_version,
            loaded.sha256 if loaded else "",
            loaded is not None and not self.draining,
        )
        if loaded is not None and loaded.monitor is not None:
            yield from families(loaded.monitor)

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope (HTTP request or lifespan)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.perf_counter()
        endpoint = "other"
        counted = scope["path"] != "/metrics"  # the scrape does not count itself
        self.metrics.in_flight += counted
        try:
            key = (scope["method"], scope["path"])
            route = self._routes.get(key)
            if route is None:
                route = self._route(*key)
                if len(self._routes) < 64:  # only valid routes get here: few, known paths
                    self._routes[key] = route
            endpoint, handler = route
            status, body, headers = await handler(scope, receive)
        except ServingError as error:
            self.refused(error)
            status, body, headers = error.status, orjson.dumps({"error": error.message}), JSON
        except Exception as error:  # a bug, not bad input: say so, keep serving
            logger.exception("internal error on %s %s", scope["method"], scope["path"])
            status, body, headers = 500, orjson.dumps({"error": f"internal error: {error}"}), JSON
        finally:
            self.metrics.in_flight -= counted
        length = (b"content-length", str(len(body)).encode())
        await send(
            {
                "type": "http.response.start",
                "status": status,
                # While draining, clients reconnect (to a pod that is not stopping).
                "headers": [*headers, length, CLOSE] if self.draining else [*headers, length],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.observe(endpoint, status, time.perf_counter() - started)
        if self._unobserved:
            self._observe()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.draining = True
                await send({"type": "lifespan.shutdown.complete"})
                return

    Handler = Callable[[Scope, Receive], Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]]]

    def _route(self, method: str, path: str) -> tuple[str, Handler]:
        parts = path.strip("/").split("/")
        if path == "/metrics":
            return "other", self._require(method, "GET", self._metrics)
        if parts[0] == "v1" and len(parts) == 3 and parts[1] == "models":
            name, _, verb = parts[2].partition(":")
            if verb == "predict":
                self._model_named(name, None)
                return "predict_v1", self._require(method, "POST", self._predict_v1)
            if not verb:  # KServe's V1 Model Ready
                self._model_named(name, None)
                return "health", self._require(method, "GET", self._model_ready_v1)
            raise NotFound(f"no endpoint {path}")
        if parts[0] != "v2":
            if path == "/openapi.json":
                return "metadata", self._require(method, "GET", self._openapi_document)
            raise NotFound(f"no endpoint {path}")
        rest = parts[1:]
        if not rest or rest == [""]:
            return "metadata", self._require(method, "GET", self._server_metadata)
        if rest[0] == "health" and len(rest) == 2 and rest[1] in ("live", "ready"):
            handler = self._live if rest[1] == "live" else self._ready
            return "health", self._require(method, "GET", handler)
        if rest == ["openapi.json"]:
            return "metadata", self._require(method, "GET", self._openapi_document)
        if rest[0] != "models" or len(rest) < 2:
            raise NotFound(f"no endpoint {path}")
        name, tail = rest[1], rest[2:]
        version = None
        if len(tail) >= 2 and tail[0] == "versions":
            version, tail = tail[1], tail[2:]
        self._model_named(name, version)
        if not tail:
            return "metadata", self._require(method, "GET", self._model_metadata)
        if tail == ["ready"]:
            return "health", self._require(method, "GET", self._model_ready)
        if tail == ["infer"]:
            return "infer", self._require(method, "POST", self._infer)
        if tail == ["feedback"]:
            return "feedback", self._require(method, "POST", self._feedback)
        if tail == ["baseline"]:
            return "metadata", self._require(method, "GET", self._baseline_document)
        raise NotFound(f"no endpoint {path}")

    def _model_named(self, name: str, version: str | None) -> None:
        if name != self.config.model_name:
            raise NotFound(
                f"model {name} is not served here (this server serves {self.config.model_name})"
            )
        if version is not None and version != self.config.model_version:
            raise NotFound(
                f"model {name} version {version} is not served here (version "
                f"{self.config.model_version} is)"
            )

    @staticmethod
    def _require(method: str, wanted: str, handler: Handler) -> Handler:
        if method != wanted and not (wanted == "GET" and method == "HEAD"):
            raise MethodNotAllowed(f"use {wanted}")
        return handler

    def serving_model(self) -> Loaded:
        """The loaded model; requests are still answered while the server drains."""
        if self.loaded is None:
            reason = self.failure.reason if self.failure else "Loading"
            detail = self.failure.message if self.failure else "the model is still loading"
            raise NotReady(f"model {self.config.model_name} is not ready ({reason}): {detail}")
        return self.loaded

    def ready_model(self) -> Loaded:
        """The loaded model, for the readiness endpoints: not ready once a stop signal came,
        so endpoints stop routing here while in-flight and late requests are answered."""
        loaded = self.serving_model()
        if self.draining:
            raise NotReady(f"model {self.config.model_name} is not ready (ShuttingDown)")
        return loaded

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.config.max_body_bytes
        for key, value in scope.get("headers", []):
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            if key == b"content-encoding" and value.strip().lower() not in (b"identity", b""):
                raise UnsupportedMediaType(
                    f"Content-Encoding {value.decode(errors='replace')!r} is not supported; "
                    "send the body uncompressed"
                )
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":  # also after the connection layer's 408
                raise ServingError("the client went away before its body was complete", 499)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the body exceeds {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body"):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # --- endpoints -------------------------------------------------------------------------

    async def _live(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        return 200, b'{"live":true}', JSON

    async def _ready(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        self.ready_model()
        return 200, b'{"ready":true}', JSON

    async def _model_ready(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        self.ready_model()
        body = {"name": self.config.model_name, "ready": True}
        return 200, orjson.dumps(body), JSON

    async def _model_ready_v1(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        ready = self.loaded is not None and not self.draining
        body = {"name": self.config.model_name, "ready": ready}
        return 200 if ready else 503, orjson.dumps(body), JSON

    async def _server_metadata(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        return 200, orjson.dumps(SERVER_METADATA), JSON

    async def _openapi_document(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        return 200, self._openapi, JSON

    async def _model_metadata(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        model = self.serving_model().model
        body = model_metadata(self.config.model_name, self.config.model_version, model)
        return 200, orjson.dumps(body), JSON

    async def _baseline_document(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        document = self.serving_model().baseline
        if document is None:
            why = "monitoring is off" if not self.config.monitoring else "no --stats-uri was given"
            raise NotFound(f"model {self.config.model_name} has no baseline: {why}")
        return 200, document, JSON

    async def predict(self, loaded: Loaded, inputs: Inputs) -> Prediction:
        """The model's answer for decoded inputs (batched when batching is on), refused (422)
        when it is not finite; counted by the monitor once the response is on its way."""
        started = time.perf_counter()
        if loaded.batcher is not None:
            prediction = await loaded.batcher.predict(inputs)
        else:
            self.metrics.batch.observe(inputs.rows)
            if inputs.rows >= OFFLOAD_ROWS:
                prediction = await asyncio.to_thread(loaded.model.run, inputs)
            else:
                prediction = loaded.model.run(inputs)
        self.metrics.inference.observe(time.perf_counter() - started)
        check_outputs(prediction, inputs)
        if loaded.monitor is not None:
            # Counted once the response is on its way: binning is not on the request's path.
            self._unobserved.append((loaded.monitor, inputs, prediction))
        return prediction

    def refused(self, error: ServingError) -> None:
        """Before a refusal is answered (every wire's error handler calls this): rows refused
        for their values are counted by the monitor, with their missing values, so a rising
        null rate is never invisible. Any other error (structure, not values) counts nothing."""
        loaded = self.loaded
        if isinstance(error, Refused) and error.rows and loaded and loaded.monitor is not None:
            loaded.monitor.refuse(error.rows, error.reason, error.nulls)

    def observe_pending(self) -> None:
        """Count what the monitor has not counted yet (after a response is sent)."""
        if self._unobserved:
            self._observe()

    def _observe(self) -> None:
        while self._unobserved:
            monitor, inputs, prediction = self._unobserved.pop()
            try:
                monitor.observe(inputs, prediction)
            except Exception:  # a monitoring bug must not fail the server
                logger.exception("monitoring failed for one request")

    async def _infer(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        body = await self._body(scope, receive)
        loaded = self.serving_model()
        model = loaded.model
        header_length = None
        for key, value in scope["headers"]:
            if key == HEADER_LENGTH:
                header_length = value
        request = decode_infer(body, model, header_length)
        prediction = await self.predict(loaded, request.inputs)
        config = self.config
        answer = outputs(request.outputs, request.binary_output, prediction, model, request.rows)
        encoded, json_length = encode_infer(
            config.model_name, config.model_version, request, answer
        )
        if json_length is None:
            return 200, encoded, JSON
        return 200, encoded, [(b"content-type", BINARY), (HEADER_LENGTH, str(json_length).encode())]

    async def _predict_v1(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        body = await self._body(scope, receive)
        loaded = self.serving_model()
        request = decode_v1(body, loaded.model)
        prediction = await self.predict(loaded, request.inputs)
        return 200, encode_v1(prediction), JSON

    async def _feedback(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        body = await self._body(scope, receive)
        loaded = self.serving_model()
        predicted, actual = decode_feedback(body, loaded.model.classifier)
        if loaded.monitor is not None:
            loaded.monitor.feedback(predicted, actual)
        return 200, orjson.dumps({"accepted": len(actual)}), JSON

    async def _metrics(self, scope: Scope, receive: Receive) -> tuple[int, bytes, Any]:
        text = generate_latest(self.registry)  # in the loop: counts are read consistently
        return 200, text, [(b"content-type", CONTENT_TYPE_LATEST.encode())]
