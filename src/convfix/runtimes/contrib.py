"""onnx.reference kernels for com.microsoft ops that onnxruntime runs only on GPU, written from their
specification (onnxruntime's ContribOperators.md), so that a model holding them has a reference on a
CPU: BiasAdd(X, bias, skip) = X + bias + skip."""

from __future__ import annotations

from typing import Any

MS = "com.microsoft"


def kernels() -> list[type]:
    from onnx.reference.op_run import OpRun

    def bias_add(self: Any, x: Any, bias: Any, skip: Any) -> tuple:
        return ((x + bias + skip).astype(x.dtype),)

    return [type("BiasAdd", (OpRun,), {"op_domain": MS, "_run": bias_add})]
