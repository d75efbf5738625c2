"""Parameters an op takes as a run-time input where onnx2tf needs a constant (it takes their len(), or
silently slices the wrong dims)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir
from convfix.rewrites.indexing import runtime_slice_axes
from convfix.rewrites.reductions import OPS, axes_at_run_time
from convfix.rewrites.runtime_axes import runtime_axes
from convfix.rewrites.runtime_pads import runtime_pads

from convfix.findings import Finding
from convfix.matcher import ScanContext, node_detector


@node_detector(*OPS)
def reduce_axes_at_run_time(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if axes_at_run_time(node):
        reason = f"{node.op_type} with axes computed at run time: onnx2tf needs constant axes"
        yield Finding("unsupported-op", reason, node=node.name, op=node.op_type, path=path)


@node_detector("Slice")
def slice_axes_at_run_time(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if runtime_slice_axes(node):
        reason = "Slice with axes computed at run time: onnx2tf slices the wrong dims (a silent mismatch)"
        yield Finding("divergence", reason, node=node.name, op="Slice", path=path)


@node_detector("Unsqueeze", "Squeeze")
def squeeze_axes_at_run_time(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if runtime_axes(node):
        reason = f"{node.op_type} with axes computed at run time: onnx2tf needs constant axes"
        yield Finding("unsupported-op", reason, node=node.name, op=node.op_type, path=path)


@node_detector("Pad")
def pads_at_run_time(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if runtime_pads(node):
        reason = "Pad with pads or axes computed at run time: onnx2tf needs constants"
        yield Finding("unsupported-op", reason, node=node.name, op="Pad", path=path)
