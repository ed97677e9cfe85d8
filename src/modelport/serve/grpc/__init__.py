"""gRPC adapter: inference.GRPCInferenceService (KServe V2 + Triton's extras that tritonclient
uses). Never imports onnxruntime."""
