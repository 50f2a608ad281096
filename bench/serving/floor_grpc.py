"""The gRPC floor: a grpc.aio server (on uvloop) answering ModelInfer with a constant, no model.

The gRPC counterpart of floor.py: `inference.GRPCInferenceService/ModelInfer` takes the request's
bytes without parsing them and answers a constant ModelInferResponse (one BYTES output "label",
encoded by hand here so the floor needs no generated code). The difference between this and a
model server's gRPC port is what decoding, inference, encoding and metrics cost; and because it is
as fast as Python's gRPC stack gets, it also shows how far the load generator reaches.
Usage: python bench/serving/floor_grpc.py PORT
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any

import uvloop

grpc: Any = importlib.import_module("grpc")


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (payloads under 128 bytes)."""
    return bytes([number << 3 | 2, len(payload)]) + payload


ANSWER = _field(1, b"floor") + _field(
    5,
    _field(1, b"label")
    + _field(2, b"BYTES")
    + _field(3, b"\x01")  # shape [1], packed
    + _field(5, _field(8, b"0")),  # contents.bytes_contents ["0"]
)


async def model_infer(request: bytes, context: Any) -> bytes:
    """Take the request's bytes, answer the constant."""
    return ANSWER


async def serve(port: int) -> None:
    """Serve until interrupted (the server's options as `python -m flywheel_serving` sets them)."""
    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 8 << 20), ("grpc.so_reuseport", 0)]
    )
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "inference.GRPCInferenceService",
                {"ModelInfer": grpc.unary_unary_rpc_method_handler(model_infer)},
            ),
        )
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(int(sys.argv[1])))  # the event loop our server's gRPC port runs in
