"""Operators the target converter has no implementation for (custom domains, ATen fallbacks, new ops)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import Finding, op_id
from convfix.matcher import ScanContext, node_detector

# Handled by the control-flow detector; reported once, there.
_CONTROL_FLOW = {"If", "Loop", "Scan"}


@node_detector()
def unsupported_op(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    op = op_id(node.domain, node.op_type)
    if op in context.supported_ops or op in _CONTROL_FLOW:
        return
    if node.domain in ("", "ai.onnx"):
        reason = f"the converter has no implementation of {op}"
    else:
        reason = f"custom-domain op {op}: neither the converter nor TensorFlow know it"
    yield Finding("unsupported-op", reason, node=node.name, op=op, path=path)
