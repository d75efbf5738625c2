"""Parameters an op takes as a run-time input where onnx2tf needs a constant (it takes their len(), or
silently slices the wrong dims)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import onnx_ir as ir
from convfix.rewrites.indexing import runtime_slice_axes
from convfix.rewrites.reductions import OPS, axes_at_run_time
from convfix.rewrites.runtime_axes import runtime_axes
from convfix.rewrites.runtime_pads import runtime_pads

from convfix.findings import Finding
from convfix.matcher import ScanContext, node_detector


def _parameter_at_run_time(
    ops: tuple[str, ...], at_run_time: Callable[[ir.Node], object], kind: str, why: str
) -> None:
    """Register a detector finding `kind` ("{op} " + why) on every node of `ops` that `at_run_time` flags."""

    def detect(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
        if at_run_time(node):
            reason = f"{node.op_type} {why}"
            yield Finding(kind, reason, node=node.name, op=node.op_type, path=path)

    node_detector(*ops)(detect)


_NEEDS_CONSTANT_AXES = "with axes computed at run time: onnx2tf needs constant axes"
_parameter_at_run_time(OPS, axes_at_run_time, "unsupported-op", _NEEDS_CONSTANT_AXES)
_parameter_at_run_time(
    ("Slice",),
    runtime_slice_axes,
    "divergence",
    "with axes computed at run time: onnx2tf slices the wrong dims (a silent mismatch)",
)
_parameter_at_run_time(("Unsqueeze", "Squeeze"), runtime_axes, "unsupported-op", _NEEDS_CONSTANT_AXES)
_parameter_at_run_time(
    ("Pad",),
    runtime_pads,
    "unsupported-op",
    "with pads or axes computed at run time: onnx2tf needs them constant",
)
