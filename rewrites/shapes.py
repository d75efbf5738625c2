"""Shape rules: pin input dims the user fixed with --input-shape (a `?` keeps its dim dynamic), then
fold the shape arithmetic."""

from __future__ import annotations

import onnx_ir as ir
import onnxscript.optimizer

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rules import Rule, RuleContext


def _has_symbolic_dim(value: ir.Value) -> bool:
    return value.shape is not None and any(not isinstance(d, int) for d in value.shape)


def _forget_symbolic_shapes(model: ir.Model) -> None:
    """Shapes derived from the old symbols are stale; inference recomputes them from the pinned dims."""
    pinned_inputs = set(model.graph.inputs)
    for node, _ in walk(model.graph):
        for value in node.outputs:
            if _has_symbolic_dim(value):
                value.shape = None
    for value in model.graph.outputs:
        if value not in pinned_inputs and _has_symbolic_dim(value):
            value.shape = None


def pin_input_shape(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    dims = context.pinned_shapes.get(finding.subject or "")
    if dims is None:
        return "no --input-shape given for this input; it stays dynamic"
    value = next((v for v in model.graph.inputs if v.name == finding.subject), None)
    if value is None:
        return f"no input named {finding.subject!r}"
    declared = list(value.shape) if value.shape is not None else [None] * len(dims)
    value.shape = ir.Shape([want if got is None else got for want, got in zip(declared, dims, strict=True)])
    _forget_symbolic_shapes(model)
    onnxscript.optimizer.optimize(model)
    return None


RULES = [
    Rule(
        "pin-input-shape",
        ("dynamic-shape", "unresolved-shape"),
        pin_input_shape,
        "fixes an input's dims from --input-shape and folds the shape arithmetic that follows",
    )
]
