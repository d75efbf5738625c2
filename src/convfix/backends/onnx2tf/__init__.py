"""The onnx2tf backend: onnx2tf 1.29 and TensorFlow in a worker process (worker.py, the only code
that imports them), driven from backend.py."""
