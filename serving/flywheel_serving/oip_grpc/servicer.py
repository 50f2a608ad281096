"""`inference.GRPCInferenceService` over the REST server's runtime, on its own port.

The entry point calls :func:`start` in the event loop uvicorn runs, once the HTTP server listens,
and stops the returned server with it (the same drain). Every RPC goes through the layers REST
uses: tensors are decoded by :mod:`..tensors` (typed `contents` or `raw_input_contents`), matched
with the model by :mod:`..signature`, predicted by :meth:`ServingApp.predict` (batching, metrics,
the finiteness check, the monitor), and readiness is the app's. A :class:`ServingError` becomes
the gRPC status its HTTP status stands for, with the REST message, once the monitor has counted
rows refused for their values (:meth:`ServingApp.refused`, as on REST); anything else is
INTERNAL, logged, and the server keeps serving. Requests count in the REST metrics under the
endpoints `grpc_infer`, `grpc_metadata` and `grpc_health`, with the HTTP status their outcome
stands for.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc

from flywheel_serving.app import ServingApp
from flywheel_serving.errors import BadRequest, NotReady, ServingError
from flywheel_serving.model import Inputs, Model
from flywheel_serving.oip_grpc import grpc_predict_v2_pb2 as pb
from flywheel_serving.signature import (
    SERVER_EXTENSIONS,
    SERVER_METADATA,
    Output,
    RequestedOutput,
    check_requested,
    model_metadata,
    outputs,
    to_inputs,
)
from flywheel_serving.tensors import Tensor, check_header, from_contents, from_raw, to_raw

logger = logging.getLogger("flywheel_serving")
SERVICE = "inference.GRPCInferenceService"
Context = Any  # grpc.aio.ServicerContext: grpcio ships no type information

CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    503: grpc.StatusCode.UNAVAILABLE,
}
"""The gRPC status of each HTTP status a :class:`ServingError` carries."""

CONTENTS = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The `InferTensorContents` field of each datatype. FP16 has none: the protocol sends it raw."""


def status_code(status: int) -> Any:
    """The gRPC status code for an HTTP status (another 4xx: INVALID_ARGUMENT, else INTERNAL)."""
    code = CODES.get(status)
    if code is not None:
        return code
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= status < 500 else grpc.StatusCode.INTERNAL


# --- messages in and out ---------------------------------------------------------------------


@dataclass(frozen=True)
class InferRequest:
    """A decoded ModelInferRequest; `raw`: its tensors came as `raw_input_contents`."""

    inputs: Inputs
    outputs: list[RequestedOutput] | None
    raw: bool


def decode_infer(request: pb.ModelInferRequest, model: Model) -> InferRequest:
    """The model's inputs and the requested outputs of a ModelInferRequest."""
    if not request.inputs:
        raise BadRequest("`inputs` must be a non-empty list of tensors")
    raw = request.raw_input_contents
    if raw:
        if any(tensor.HasField("contents") for tensor in request.inputs):
            raise BadRequest(
                "a request sends its tensors either in raw_input_contents or in each input's "
                "contents, not both"
            )
        if len(raw) != len(request.inputs):
            raise BadRequest(
                f"raw_input_contents holds {len(raw)} tensors for {len(request.inputs)} inputs"
            )
    tensors = [
        _tensor(tensor, f"inputs[{position}]", raw[position] if raw else None)
        for position, tensor in enumerate(request.inputs)
    ]
    decoded = to_inputs(tensors, model)
    wanted = _outputs(request.outputs)
    check_requested(wanted, model)
    return InferRequest(decoded, wanted, bool(raw))


def _tensor(tensor: pb.ModelInferRequest.InferInputTensor, where: str, raw: bytes | None) -> Tensor:
    name, datatype, shape = check_header(tensor.name, tensor.datatype, list(tensor.shape), where)
    if raw is not None:
        return from_raw(name, datatype, shape, raw)
    if not tensor.HasField("contents"):
        raise BadRequest(f"input {name}: no data: neither contents nor raw_input_contents")
    field = CONTENTS.get(datatype)
    if field is None:
        raise BadRequest(
            f"input {name}: {datatype} data must be sent in raw_input_contents "
            "(InferTensorContents has no field for it)"
        )
    given = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    wrong = [g for g in given if g != field]
    if wrong:
        raise BadRequest(
            f"input {name}: {datatype} data goes in contents.{field}, not {', '.join(wrong)}"
        )
    return from_contents(name, datatype, shape, getattr(tensor.contents, field))


def _outputs(
    requested: Any,  # RepeatedCompositeFieldContainer[InferRequestedOutputTensor]
) -> list[RequestedOutput] | None:
    if not requested:
        return None
    for output in requested:
        if "classification" in output.parameters:
            raise BadRequest(
                f"output {output.name}: parameters.classification is not supported; ask for "
                "the outputs"
            )
    return [RequestedOutput(output.name) for output in requested]


def encode_infer(
    model_name: str,
    model_version: str,
    request: pb.ModelInferRequest,
    answer: list[Output],
    raw: bool,
) -> pb.ModelInferResponse:
    """The ModelInferResponse: `raw_output_contents` (what Triton's client reads) when the request
    came raw, else typed `contents`, as KServe's server answers."""
    response = pb.ModelInferResponse(
        model_name=model_name, model_version=model_version, id=request.id
    )
    for key, value in request.parameters.items():
        response.parameters[key].CopyFrom(value)
    for output in answer:
        tensor = response.outputs.add(
            name=output.name, datatype=output.datatype, shape=output.shape
        )
        if raw:
            response.raw_output_contents.append(to_raw(output.datatype, output.array))
            continue
        values = output.array.reshape(-1).tolist()
        if output.datatype == "BYTES":
            values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        getattr(tensor.contents, CONTENTS[output.datatype]).extend(values)
    return response


def _metadata(document: dict[str, Any]) -> pb.ModelMetadataResponse:
    described = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=document["name"],
        versions=document["versions"],
        platform=document["platform"],
        inputs=[described(**tensor) for tensor in document["inputs"]],
        outputs=[described(**tensor) for tensor in document["outputs"]],
    )


# --- the service -----------------------------------------------------------------------------


class InferenceServicer:
    """The RPCs of `inference.GRPCInferenceService`, answered by one :class:`ServingApp`."""

    def __init__(self, app: ServingApp) -> None:
        self.app = app

    @asynccontextmanager
    async def _rpc(self, endpoint: str, context: Context) -> AsyncIterator[None]:
        """Count one RPC in the request metrics; turn an error into its gRPC status."""
        metrics = self.app.metrics
        started = time.perf_counter()
        metrics.in_flight += 1
        status = 200
        try:
            yield
        except ServingError as error:
            status = error.status
            self.app.refused(error)  # rows refused for their values: counted before the abort
            await _abort(context, status_code(status), error.message)
        except Exception as error:  # a bug, not bad input: say so, keep serving
            status = 500
            logger.exception("internal error on gRPC %s", endpoint)
            await _abort(context, grpc.StatusCode.INTERNAL, f"internal error: {error}")
        finally:
            metrics.in_flight -= 1
            metrics.observe(endpoint, status, time.perf_counter() - started)

    def _ready(self) -> bool:
        try:
            self.app.ready_model()
        except NotReady:
            return False
        return True

    def _model_named(self, name: str, version: str) -> None:
        # The REST routes' own check, so both wires answer the same 404 message.
        self.app._model_named(name, version or None)

    async def server_live(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        """Always live while the process answers."""
        async with self._rpc("grpc_health", context):
            return pb.ServerLiveResponse(live=True)

    async def server_ready(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        """Ready once loaded, verified and warmed up; not ready once a stop signal came."""
        async with self._rpc("grpc_health", context):
            return pb.ServerReadyResponse(ready=self._ready())

    async def model_ready(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """As ServerReady, for the served model (NOT_FOUND for another)."""
        async with self._rpc("grpc_health", context):
            self._model_named(request.name, request.version)
            return pb.ModelReadyResponse(ready=self._ready())

    async def server_metadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        """The server's name, version and extensions (as `GET /v2`)."""
        async with self._rpc("grpc_metadata", context):
            return pb.ServerMetadataResponse(
                name=str(SERVER_METADATA["name"]),
                version=str(SERVER_METADATA["version"]),
                extensions=SERVER_EXTENSIONS,
            )

    async def model_metadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        """The model's inputs and outputs (as `GET /v2/models/{name}`)."""
        async with self._rpc("grpc_metadata", context):
            self._model_named(request.name, request.version)
            config = self.app.config
            model = self.app.serving_model().model
            return _metadata(model_metadata(config.model_name, config.model_version, model))

    async def model_infer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        """One inference (as `POST /v2/models/{name}/infer`)."""
        async with self._rpc("grpc_infer", context):
            self._model_named(request.model_name, request.model_version)
            app = self.app
            loaded = app.serving_model()
            decoded = decode_infer(request, loaded.model)
            prediction = await app.predict(loaded, decoded.inputs)
            # The monitor counts the rows once the response is on its way.
            context.add_done_callback(lambda _: app.observe_pending())
            answer = outputs(decoded.outputs, False, prediction, loaded.model, decoded.inputs.rows)
            config = app.config
            return encode_infer(
                config.model_name, config.model_version, request, answer, decoded.raw
            )


async def _abort(context: Context, code: Any, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("ServicerContext.abort returns by raising")  # pragma: no cover


def handler(servicer: InferenceServicer) -> Any:
    """The generic handler of the service's six RPCs (no generated `_pb2_grpc` needed)."""
    methods: dict[str, tuple[Callable[..., Awaitable[Any]], Any]] = {
        "ServerLive": (servicer.server_live, pb.ServerLiveRequest),
        "ServerReady": (servicer.server_ready, pb.ServerReadyRequest),
        "ModelReady": (servicer.model_ready, pb.ModelReadyRequest),
        "ServerMetadata": (servicer.server_metadata, pb.ServerMetadataRequest),
        "ModelMetadata": (servicer.model_metadata, pb.ModelMetadataRequest),
        "ModelInfer": (servicer.model_infer, pb.ModelInferRequest),
    }
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(
                method,
                request_deserializer=message.FromString,
                response_serializer=lambda response: response.SerializeToString(),
            )
            for name, (method, message) in methods.items()
        },
    )


async def start(app: ServingApp) -> Any:
    """A started `grpc.aio` server on `--grpc-port`, in the running event loop. Messages over
    `--max-body-bytes` get RESOURCE_EXHAUSTED; a port in use raises RuntimeError."""
    config = app.config
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", config.max_body_bytes),
            ("grpc.so_reuseport", 0),  # a port in use is an error, not a second listener
        ]
    )
    server.add_generic_rpc_handlers((handler(InferenceServicer(app)),))
    host = f"[{config.host}]" if ":" in config.host else config.host
    port = server.add_insecure_port(f"{host}:{config.grpc_port}")
    await server.start()
    logger.info("gRPC %s listening on %s:%d", SERVICE, host, port)
    return server
