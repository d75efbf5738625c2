"""Conversion targets: onnx2tf, run in a worker process so TensorFlow stays out of this one.

The names load on first use, so that the worker can be started (target.process) before anything
heavy is imported."""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ConversionResult", "Onnx2TfTarget"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'convfix.target' has no attribute {name!r}")
    return getattr(importlib.import_module("convfix.target.onnx2tf_target"), name)
