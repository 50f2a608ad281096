"""The wire formats and load generators of the benchmark beside OIP v2 JSON over wrk.

- binary: the OIP v2 binary tensor data extension over HTTP/1.1 (a JSON header whose length the
  `Inference-Header-Content-Length` header gives, then the raw little-endian FP32 bytes; input
  `"parameters": {"binary_data_size": N}`, request `"parameters": {"binary_data_output": true}`),
  posted by wrk from a Lua script that reads the body from a file.
- grpc: `inference.GRPCInferenceService/ModelInfer` (KServe's grpc_predict_v2.proto) with the
  tensor in typed `contents.fp32_contents`, driven by ghz (Go, built from the Go module proxy into
  the work directory, pinned to the client core like wrk). ghz reads the service from a protoset
  written from our serving package's generated module (or MLServer's, the same `inference`
  package, where ours is missing), so the benchmark carries no copy of the proto. echo_grpc/ is a
  Go server answering a constant: the calls a second ghz itself reaches on its core.

Both load generators are closed-loop with N requests in flight; the client's CPU share over the
measured run is recorded so a row where the client, not the server, was the limit shows.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "v0.120.0"
MODEL_INFER = "inference.GRPCInferenceService.ModelInfer"
_CLOSING = ("the client connection is closing", "use of closed network connection")
_DUMP_PROTOSET = (
    "import sys\n"
    "from google.protobuf import descriptor_pb2\n"
    "from {module} import DESCRIPTOR\n"
    "proto = descriptor_pb2.FileDescriptorProto()\n"
    "DESCRIPTOR.CopyToProto(proto)\n"
    "sys.stdout.buffer.write(descriptor_pb2.FileDescriptorSet(file=[proto]).SerializeToString())\n"
)


@dataclass(frozen=True)
class Sample:
    """One load-generator run."""

    rps: float
    p50_us: float
    p99_us: float
    client_cpu: float = 0.0
    """The load generator's CPU time over the run's duration (1.0: its core was full)."""
    server_cpu: float = 0.0
    """The server process's CPU time over the run's duration (1.0: its core was full)."""
    other_cpu: float = 0.0
    """CPU time of everything but the server and the load generator over the run's duration, in
    cores (other people's work on the shared machine: what disturbed the run)."""


def _busy_ticks() -> int:
    """Busy clock ticks of all cores since boot (steal included: the hypervisor's share)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return user + nice + system + irq + softirq + steal


def _process_ticks(pid: int) -> int:
    """A process's user and system clock ticks (all its threads)."""
    if not pid:
        return 0
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def measured(
    argv: list[str], env: dict[str, str], duration: float, server_pid: int = 0
) -> tuple[str, float, float, float]:
    """Run a load generator; its stdout, its CPU share of the run's duration, the server's, and
    the cores the rest of the machine (not they) used meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy, server = _busy_ticks(), _process_ticks(server_pid)
    started = time.monotonic()
    output = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    wall = time.monotonic() - started
    busy, server = _busy_ticks() - busy, _process_ticks(server_pid) - server
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    others = max(0.0, (busy - server) / hz - cpu) / wall
    return output, cpu / duration, server / hz / wall, others


def binary_body(data: np.ndarray[Any, Any]) -> tuple[bytes, int]:
    """A binary-extension request for one 2-D FP32 tensor: the body and its JSON header's length."""
    raw = np.ascontiguousarray(data, dtype="<f4").tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "shape": list(data.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "parameters": {"binary_data_output": True},
        }
    ).encode()
    return header + raw, len(header)


def lua_binary(body_file: Path, header_length: int) -> str:
    """A wrk script posting the bytes of a file with the binary extension's headers."""
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        f'wrk.headers["Inference-Header-Content-Length"] = "{header_length}"\n'
        f'local file = assert(io.open("{body_file}", "rb"))\n'
        "wrk.body = file:read('*a')\n"
        "file:close()\n"
    )


def grpc_request(model: str, data: np.ndarray[Any, Any]) -> dict[str, Any]:
    """A ModelInferRequest (as protobuf JSON) with one 2-D FP32 tensor in typed contents."""
    values = np.asarray(data, dtype=np.float32)
    return {
        "model_name": model,
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP32",
                "shape": list(values.shape),
                "contents": {"fp32_contents": values.reshape(-1).tolist()},
            }
        ],
    }


def _go(args: list[str], what: str, cwd: Path | None = None, **env: str) -> None:
    """Run the Go tool (`$GO`, default `go`) without cgo; a failure ends the benchmark."""
    go = os.environ.get("GO", "go")
    try:
        subprocess.run(
            [go, *args],
            cwd=cwd,
            env={**os.environ, "CGO_ENABLED": "0", **env},
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as error:
        raise SystemExit(f"cannot build {what} ({error}); it needs Go (set GO=...)") from None


def ensure_ghz(work: Path) -> Path:
    """ghz, built with `go install` into the work directory."""
    target = work / "ghz" / GHZ_VERSION
    binary = target / "ghz"
    if not binary.exists():
        _go(["install", f"{GHZ_MODULE}@{GHZ_VERSION}"], "ghz", GOBIN=str(target))
    return binary


def ensure_echo(work: Path) -> Path:
    """The Go echo server (echo_grpc/), built into the work directory."""
    source = Path(__file__).resolve().parent / "echo_grpc"
    binary = work / "echo_grpc" / "echo_grpc"
    newest = max(f.stat().st_mtime for f in source.iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest:
        _go(["build", "-o", str(binary), "."], "echo_grpc", cwd=source)
    return binary


def protoset(work: Path, candidates: list[tuple[Path, str]]) -> tuple[Path, str]:
    """The OIP v2 gRPC service as a FileDescriptorSet, from the first generated module found."""
    target = work / "grpc_predict_v2.protoset"
    for python, module in candidates:
        dump = subprocess.run(
            [str(python), "-c", _DUMP_PROTOSET.format(module=module)], capture_output=True
        )
        if dump.returncode == 0 and dump.stdout:
            target.write_bytes(dump.stdout)
            return target, module
    raise SystemExit(f"no generated grpc_predict_v2 module among {candidates}")


class Messages:
    """ModelInferRequest and ModelInferResponse classes built from the protoset."""

    def __init__(self, protoset_file: Path) -> None:
        descriptor_pb2: Any = importlib.import_module("google.protobuf.descriptor_pb2")
        factory: Any = importlib.import_module("google.protobuf.message_factory")
        self._json: Any = importlib.import_module("google.protobuf.json_format")
        files = descriptor_pb2.FileDescriptorSet.FromString(protoset_file.read_bytes()).file
        classes = factory.GetMessages(files)
        self.request: Any = classes["inference.ModelInferRequest"]
        self.response: Any = classes["inference.ModelInferResponse"]

    def encode(self, request: dict[str, Any]) -> bytes:
        """A request's wire bytes."""
        return bytes(self._json.ParseDict(request, self.request()).SerializeToString())

    def decode(self, answer: bytes) -> dict[str, Any]:
        """A response as a dict."""
        message = self.response.FromString(answer)
        return dict(self._json.MessageToDict(message, preserving_proto_field_name=True))


def grpc_call(address: str, request: bytes, timeout: float = 10) -> bytes:
    """One ModelInfer call with pre-encoded bytes; the answer's bytes."""
    grpc: Any = importlib.import_module("grpc")
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        return bytes(call(request, timeout=timeout))


def grpc_serving(address: str) -> bool:
    """Whether a gRPC server answers on the address (any status but UNAVAILABLE)."""
    grpc: Any = importlib.import_module("grpc")
    try:
        grpc_call(address, b"", timeout=2)
    except grpc.RpcError as error:
        return bool(error.code() != grpc.StatusCode.UNAVAILABLE)
    return True


def wait_grpc(address: str, alive: Any, seconds: float = 60) -> bool:
    """Wait until a gRPC server answers; False when it does not in time or `alive()` turns false."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive():
        if grpc_serving(address):
            return True
        time.sleep(0.2)
    return False


def ghz(
    binary: Path,
    proto: Path,
    address: str,
    data: Path,
    concurrency: int,
    duration: float,
    warmup: float,
    core: str,
    server_pid: int = 0,
) -> Sample:
    """Warm up, then measure with ghz; fails on any call that does not end OK."""
    base = [
        "taskset",
        "-c",
        core,
        str(binary),
        "--insecure",
        "--protoset",
        str(proto),
        "--call",
        MODEL_INFER,
        "--data-file",
        str(data),
        "--disable-template-functions",
        "--disable-template-data",
        "--cpus",
        "1",
        "--connections",
        "1",
        f"--concurrency={concurrency}",
        "--format",
        "json",
    ]
    env = dict(os.environ)
    subprocess.run([*base, f"--duration={warmup}s", address], check=True, capture_output=True)
    output, cpu, server, others = measured(
        [*base, f"--duration={duration}s", address], env, duration, server_pid
    )
    report = json.loads(output)
    codes = report.get("statusCodeDistribution") or {}
    errors: dict[str, int] = report.get("errorDistribution") or {}
    # ghz ends a timed run by closing its connection under the calls still in flight, and counts
    # them as Canceled/Unavailable (bojand/ghz#370): at most one a worker, not the server's doing.
    cut = sum(n for text, n in errors.items() if any(m in text for m in _CLOSING))
    if set(codes) - {"OK", "Canceled", "Unavailable"} or cut != sum(errors.values()):
        raise SystemExit(f"errors against {address}: {codes} {errors}")
    if cut > concurrency:
        raise SystemExit(f"{cut} calls cut at the end of a run at c={concurrency}: {errors}")
    latencies = {int(p["percentage"]): p["latency"] / 1000 for p in report["latencyDistribution"]}
    return Sample(float(report["rps"]), latencies[50], latencies[99], cpu, server, others)
