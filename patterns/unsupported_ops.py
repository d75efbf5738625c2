"""Operators the target converter has no implementation for (custom domains, ATen fallbacks, new ops)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import ATEN_DOMAIN, Finding, node_op
from convfix.matcher import ScanContext, node_detector
from convfix.runtimes import aten

# Handled by the control-flow detector; reported once, there.
_CONTROL_FLOW = {"If", "Loop", "Scan"}


@node_detector()
def unsupported_op(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    op = node_op(node)
    if op in context.supported_ops or op in _CONTROL_FLOW:
        return
    if node.domain in ("", "ai.onnx"):
        reason = f"the converter has no implementation of {op}"
    elif node.domain == ATEN_DOMAIN:
        operator = op.split("::", 1)[1]
        refusal = aten.refusal(operator)
        reason = f"ATen fallback aten::{operator}: a PyTorch op the exporter could not express in ONNX"
        reason += f"; {refusal}" if refusal else ""
    else:
        reason = f"custom-domain op {op}: neither the converter nor TensorFlow know it"
    yield Finding("unsupported-op", reason, node=node.name, op=op, path=path)
