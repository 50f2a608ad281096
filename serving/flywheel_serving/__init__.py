"""The Flywheel model server: ONNX models behind the Open Inference Protocol v2.

Layers, MLServer style: :mod:`.model` (the runtime: load, verify, run) -> :mod:`.protocol`
(the data layer: decode and validate requests against the signature, encode responses) ->
:mod:`.app` (thin ASGI endpoints). :mod:`.monitoring` counts feature values, predictions and
label feedback on the training baseline's bins; :mod:`.metrics` holds the request metrics.

It depends on onnxruntime, numpy, prometheus-client, orjson and uvicorn only: never on kopf, a
Kubernetes client or scikit-learn (enforced by import-linter), and it never unpickles.
"""
