"""Dtypes onnx2tf cannot carry through an op it builds arithmetically."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir
from convfix.rewrites.bool_ops import bool_expand

from convfix.findings import Finding
from convfix.matcher import ScanContext, node_detector


@node_detector("Expand")
def expand_of_bool(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    shape = node.inputs[1] if len(node.inputs) > 1 else None
    if bool_expand(node) and shape is not None and ir.convenience.get_const_tensor(shape) is None:
        reason = "Expand of a bool tensor to a computed shape: onnx2tf multiplies by ones, which bool lacks"
        yield Finding("dtype", reason, node=node.name, op="Expand", path=path)
