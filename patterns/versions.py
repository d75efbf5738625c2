"""A model newer than the runtimes: a default-domain opset or an IR version onnxruntime does not load
(onnx's newest releases write them first; the ONNX node suite holds hundreds)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import ScanContext, model_detector
from convfix.oracle import RUNTIME_IR_VERSION, RUNTIME_OPSET


@model_detector
def newer_than_the_runtimes(model: ir.Model, context: ScanContext) -> Iterator[Finding]:
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    newer = []
    if opset > RUNTIME_OPSET:
        newer.append(f"opset {opset} (onnxruntime and onnx2tf know up to {RUNTIME_OPSET})")
    if (model.ir_version or 0) > RUNTIME_IR_VERSION:
        newer.append(f"IR version {model.ir_version} (onnxruntime loads up to {RUNTIME_IR_VERSION})")
    if newer:
        yield Finding("opset", f"newer than the runtimes: {' and '.join(newer)}", subject="model")
