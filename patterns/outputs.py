"""Graph outputs the converter leaves out (rewrites/constant_outputs.py)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir
from convfix.rewrites.constant_outputs import constant_outputs

from convfix.findings import Finding
from convfix.matcher import ScanContext, model_detector


@model_detector
def constant_graph_outputs(model: ir.Model, context: ScanContext) -> Iterator[Finding]:
    for value in constant_outputs(model):
        reason = f"graph output {value.name} is a constant: onnx2tf leaves it out of the Keras model"
        yield Finding("conversion-error", reason, subject=value.name)
