"""Training for the TrainingRun Job: build the scikit-learn model, fit, evaluate, export to ONNX.

Pure ML code (scikit-learn, skl2onnx, onnxruntime): nothing here imports kopf or a Kubernetes
client. The Job entrypoint strings the steps together (issue 6, in progress).
"""
