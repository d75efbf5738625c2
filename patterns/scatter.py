"""Scatters with a reduction: onnx2tf refuses it in ScatterElements and ignores it in ScatterND."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import ScanContext, node_detector


@node_detector("ScatterElements", "ScatterND")
def scatter_with_reduction(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    reduction = node.attributes.get_string("reduction", "none")
    if reduction == "none":
        return
    if node.op_type == "ScatterND":
        reason = f"ScatterND reduction={reduction}: onnx2tf ignores the reduction (a silent mismatch)"
        yield Finding("divergence", reason, node=node.name, op=node.op_type, path=path)
    else:
        reason = f"ScatterElements reduction={reduction}: onnx2tf supports only 'none'"
        yield Finding("unsupported-op", reason, node=node.name, op=node.op_type, path=path)
