"""Real OIP v2 clients that cannot live in .venv: the kserve Python SDK in its own virtualenv.

kserve 0.21 requires python-dateutil<3 and pandas<3 (constraints.txt locks 4.0.0 and 3.1.1), so
the SDK is installed into a cached virtualenv of its own with the project's uv
(`~/.cache/flywheel/venvs/kserve-0.21.0`, or under `$FLYWHEEL_CACHE`), built by the test suite
when it is missing (~10 s from PyPI) and reused while its package list (the stamp file) is
unchanged. A client script runs in it as a subprocess,
reads what to do as JSON on stdin and prints what the SDK answered as JSON on stdout.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CACHE = Path(os.environ.get("FLYWHEEL_CACHE", Path.home() / ".cache" / "flywheel")) / "venvs"
UV = Path(sys.executable).parent / "uv"
KSERVE_VERSION = "0.21.0"
KSERVE_PACKAGES = [f"kserve=={KSERVE_VERSION}"]
EXCLUDE_NEWER = "2026-12-01T00:00:00Z"
"""Resolve the SDK's dependencies as they were on this date: the same venv on every machine."""


class VenvError(RuntimeError):
    """The virtualenv could not be built (uv's output is in the message)."""


def ensure_venv(name: str, packages: list[str]) -> Path:
    """A cached virtualenv with `packages` (made with uv; rebuilt when its stamp differs).

    The stamp is written last, under a lock: an interrupted build leaves no stamp and is
    redone, and a concurrent test run waits for the build instead of racing it.
    """
    venv = CACHE / name
    stamp_text = "\n".join([*packages, f"exclude-newer {EXCLUDE_NEWER}"])
    stamp = venv / ".packages"
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == stamp_text:
            return venv
        shutil.rmtree(venv, ignore_errors=True)
        # The interpreter running the tests (a 3.11 the machine has): uv downloads none.
        base = getattr(sys, "_base_executable", sys.executable)
        for argv in (
            [str(UV), "venv", "--quiet", "--python", base, str(venv)],
            [
                str(UV),
                "pip",
                "install",
                "--quiet",
                "--python",
                str(venv / "bin/python"),
                "--exclude-newer",
                EXCLUDE_NEWER,
                *packages,
            ],
        ):
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise VenvError(f"{' '.join(argv)} failed:\n{done.stdout}\n{done.stderr}")
        stamp.write_text(stamp_text)
        return venv


def kserve_python() -> tuple[Path, float]:
    """The kserve SDK virtualenv's python, and the seconds it took to get it (0: cached)."""
    started = time.monotonic()
    venv = ensure_venv(f"kserve-{KSERVE_VERSION}", KSERVE_PACKAGES)
    return venv / "bin/python", time.monotonic() - started


KSERVE_SCRIPT = r'''
"""Talk to an OIP v2 server with the kserve SDK on its defaults; print what it answered."""
import asyncio
import base64
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput
from kserve.protocol.rest.v2_datamodels import ModelMetadataResponse, ServerMetadataResponse

DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "BYTES": np.object_}


class Recording(httpx.AsyncBaseTransport):
    """httpx's default transport, keeping every request's bytes (for reports)."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.sent = []

    async def handle_async_request(self, request):
        body = await request.aread()
        self.sent.append(
            {
                "method": request.method,
                "url": str(request.url),
                "headers": dict(request.headers),
                "body": base64.b64encode(body).decode(),
            }
        )
        return await self.inner.handle_async_request(request)

    async def aclose(self):
        await self.inner.aclose()


def plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


async def attempt(call):
    try:
        return {"value": await call}
    except httpx.HTTPStatusError as error:
        return {"error": str(error), "status": error.response.status_code}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


async def infer(client, url, model, case):
    inputs = []
    for tensor in case["inputs"]:
        given = InferInput(tensor["name"], tensor["shape"], tensor["datatype"])
        array = np.array(tensor["values"], dtype=DTYPES[tensor["datatype"]])
        given.set_data_from_numpy(array.reshape(tensor["shape"]))  # binary_data=True: default
        inputs.append(given)
    outputs = None
    if "outputs" in case:
        outputs = [RequestedOutput(o["name"], o.get("parameters")) for o in case["outputs"]]
    request = InferRequest(
        model_name=model,
        infer_inputs=inputs,
        request_id=case.get("id"),
        parameters=case.get("parameters"),
        request_outputs=outputs,
    )
    response = await client.infer(url, request, model_name=model)
    return {
        "id": response.id,
        "model_name": response.model_name,
        "outputs": [
            {
                "name": o.name,
                "datatype": o.datatype,
                "shape": list(o.shape),
                "data": plain(o.as_numpy().reshape(-1).tolist()),
            }
            for o in response.outputs
        ],
    }


async def main(spec):
    answers = []
    for target in spec["targets"]:
        url, model = target["url"], target["model"]
        transport = Recording()
        v2 = InferenceRESTClient(RESTConfig(protocol="v2", transport=transport))
        v1 = InferenceRESTClient(RESTConfig(transport=transport))  # protocol "v1": the default
        answer = {
            "live": await attempt(v2.is_server_live(url)),
            "ready": await attempt(v2.is_server_ready(url)),
            "model_ready": await attempt(v2.is_model_ready(url, model)),
        }
        # The SDK has no metadata calls: its own response models check what the server says.
        async with httpx.AsyncClient(transport=transport) as http:
            server = await http.get(f"{url}/v2")
            answer["server_metadata"] = ServerMetadataResponse.model_validate_json(
                server.content
            ).model_dump()
            metadata = await http.get(f"{url}/v2/models/{model}")
            answer["model_metadata"] = ModelMetadataResponse.model_validate_json(
                metadata.content
            ).model_dump()
        answer["infer"] = {
            case["case"]: await attempt(infer(v2, url, model, case)) for case in target["infer"]
        }
        # The SDK's default protocol is v1: its health calls there (KServe's V1 data plane).
        answer["v1_health"] = {
            "live": await attempt(v1.is_server_live(url)),
            "model_ready": await attempt(v1.is_model_ready(url, model)),
        }
        answer["v1"] = {
            case["case"]: await attempt(v1.infer(url, case["body"], model_name=model))
            for case in target.get("v1", [])
        }
        answer["sent"] = transport.sent
        await v2.close()
        answers.append(answer)
    return answers


print(json.dumps(asyncio.run(main(json.load(sys.stdin)))))
'''


def run_kserve(python: Path, spec: dict[str, Any], timeout: float = 120) -> list[dict[str, Any]]:
    """Run the kserve client script on `spec` ({"targets": [...]}) and return its answers."""
    # Bytecode is cached in the (cached) venv even where PYTHONDONTWRITEBYTECODE is set: the SDK
    # imports pandas, fastapi and kubernetes, ~15 s compiled from source on every run, ~2 s not.
    unwanted = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")
    env = {k: v for k, v in os.environ.items() if k not in unwanted}
    done = subprocess.run(
        [str(python), "-c", KSERVE_SCRIPT],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the kserve client failed ({done.returncode}):\n{done.stderr[-4000:]}")
    answers: list[dict[str, Any]] = json.loads(done.stdout)
    return answers
