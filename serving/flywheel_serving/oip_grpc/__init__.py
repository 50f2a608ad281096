"""The Open Inference Protocol v2 over gRPC: `inference.GRPCInferenceService`.

`grpc_predict_v2.proto` is KServe's file as published (docs/predict-api/v2), package `inference`
kept so that Triton's and KServe's gRPC clients call this server unchanged. `grpc_predict_v2_pb2`
(.py and .pyi) is generated from it by `make proto` and committed; a unit test fails when they
drift. :mod:`.servicer` answers the RPCs over the REST server's runtime.
"""
