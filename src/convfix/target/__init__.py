"""Conversion targets: onnx2tf, run in a worker process so TensorFlow stays out of this one."""

from convfix.target.onnx2tf_target import ConversionResult, Onnx2TfTarget

__all__ = ["ConversionResult", "Onnx2TfTarget"]
