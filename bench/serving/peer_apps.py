"""Source of the peer servers, written into their own virtualenvs by the benchmark.

Each is what a user would write or configure: MLServer's scikit-learn runtime on a joblib file,
MLServer with a minimal onnxruntime runtime on our ONNX file (`parallel_workers=0`, the fastest
MLServer configuration on one core), and a hand-written FastAPI + onnxruntime app. The ONNX
graph has one input per feature, so the ORT peers split the 2-D tensor into columns, as our
server does. The ORT runtime hands string labels over as bytes, which MLServer's gRPC port needs
(its JSON encoder turns them back into the same text).
"""

from __future__ import annotations

MLSERVER_ORT_RUNTIME = """
import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OrtModel(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        feeds = {name: x[:, i : i + 1] for i, name in enumerate(self._inputs)}
        results = [_bytes(np.asarray(r)) for r in self._session.run(None, feeds)]
        return InferenceResponse(
            model_name=self.name,
            outputs=[
                NumpyCodec.encode_output(name=n, payload=r) for n, r in zip(self._outputs, results)
            ],
        )


def _bytes(array):
    # String labels as bytes: MLServer's gRPC converter takes nothing else for a BYTES tensor
    # (str fails with "expected bytes, str found"); its JSON encoder turns them back into text.
    if array.dtype != object:
        return array
    flat = [v.encode() if isinstance(v, str) else v for v in array.reshape(-1)]
    return np.array(flat, dtype=object).reshape(array.shape)
"""

FASTAPI_APP = """
from typing import Any

import numpy as np
import onnxruntime as ort
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.inter_op_num_threads = 1
session = ort.InferenceSession("MODEL_PATH", options, providers=["CPUExecutionProvider"])
input_names = [i.name for i in session.get_inputs()]
output_names = [o.name for o in session.get_outputs()]
app = FastAPI()


class Tensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceRequest(BaseModel):
    id: str | None = None
    inputs: list[Tensor]


@app.post("/v2/models/{model_name}/infer")
def infer(model_name: str, request: InferenceRequest) -> dict[str, Any]:
    tensor = request.inputs[0]
    try:
        x = np.asarray(tensor.data, dtype=np.float32).reshape(tensor.shape)
    except ValueError as error:
        raise HTTPException(status_code=400, detail=str(error)) from error
    feeds = {name: x[:, i : i + 1] for i, name in enumerate(input_names)}
    results = session.run(None, feeds)
    outputs = []
    for name, result in zip(output_names, results):
        array = np.asarray(result)
        data = array.reshape(-1).tolist()
        datatype = "BYTES" if array.dtype == object else "FP32"
        outputs.append({"name": name, "shape": list(array.shape), "datatype": datatype,
                        "data": [str(v) for v in data] if datatype == "BYTES" else data})
    return {"model_name": model_name, "id": request.id, "outputs": outputs}
"""
