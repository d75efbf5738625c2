"""The runtimes that compute the reference (onnxruntime, onnx.reference, torch for ATen nodes), as
they run inside the oracle worker process; convfix.oracle is the caller's side."""
