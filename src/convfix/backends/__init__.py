"""Converter backends behind the runtime boundary; onnx2tf is the first.

The names load on first use, so that a worker can be started (convfix.boundary.process) before
anything heavy is imported."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Backend": "convfix.backends.base",
    "ConversionResult": "convfix.backends.base",
    "Onnx2TfBackend": "convfix.backends.onnx2tf.backend",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'convfix.backends' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
