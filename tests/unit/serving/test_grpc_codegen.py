"""The committed gRPC messages are protoc's output for the committed .proto (`make proto`).

The messages are imported in a child process only: they register package `inference` in
protobuf's default descriptor pool, as tritonclient.grpc's own messages do, and one process
cannot hold both (the serving tests import tritonclient.grpc).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PROTO_DIR = ROOT / "serving" / "flywheel_serving" / "oip_grpc"
GENERATED = ("grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi")


def test_the_generated_files_are_what_make_proto_writes(tmp_path: Path) -> None:
    # The Makefile's `proto` recipe, into a temporary folder.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            str(PROTO_DIR / "grpc_predict_v2.proto"),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    for name in GENERATED:
        fresh = (tmp_path / name).read_text()
        if (PROTO_DIR / name).read_text() != fresh:
            pytest.fail(f"{name} differs from protoc's output: run `make proto` and commit it")


def test_the_makefile_regenerates_the_same_files() -> None:
    recipe = (ROOT / "Makefile").read_text().split("\nproto:", 1)[1].split("\n.PHONY", 1)[0]
    assert "grpc_tools.protoc -I$(PROTO_DIR) --python_out=$(PROTO_DIR) --pyi_out=$(PROTO_DIR)" in (
        recipe
    )
    assert "PROTO_DIR := serving/flywheel_serving/oip_grpc" in (ROOT / "Makefile").read_text()


def test_the_service_keeps_the_upstream_package_and_rpcs() -> None:
    probe = (
        "from flywheel_serving.oip_grpc import grpc_predict_v2_pb2 as pb\n"
        "service = pb.DESCRIPTOR.services_by_name['GRPCInferenceService']\n"
        "print(service.full_name, *[m.name for m in service.methods])\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    assert shown == [
        "inference.GRPCInferenceService",
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ]
