"""The Flywheel model server: ONNX models behind the Open Inference Protocol v2.

It depends on onnxruntime, numpy, prometheus-client and its HTTP stack only: never on kopf, a
Kubernetes client or scikit-learn (enforced by import-linter). The runtime itself is built in the
serving issue; until then this package only reserves the import name.
"""
