"""Scalar graph inputs kept scalar inside onnx2tf.

onnx2tf makes every graph input a Keras Input, which adds a batch dim: a 0-D input reaches the ops as
a 1-D tensor, and ops that need a scalar fail (`Shape must be rank 0 but is rank 1` in Range, the
window ops, Einsum). A ReduceMax over no given axes with keepdims=0 is the identity on a scalar in
ONNX, and in TF it brings the 1-D tensor back to rank 0; the optimizer leaves it in place. Exact.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.rules import Rule, RuleContext


def scalar_inputs_kept_scalar(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    scalars = [v for v in model.graph.inputs if v.shape is not None and len(v.shape) == 0 and v.uses()]
    if not scalars:
        return "no scalar graph input"
    first = next(iter(model.graph))
    for value in scalars:
        uses = list(value.uses())
        node = ir.node("ReduceMax", [value], attributes={"keepdims": 0}, name=f"{value.name}_kept_scalar")
        model.graph.insert_before(first, node)
        node.outputs[0].dtype, node.outputs[0].shape = value.dtype, ir.Shape([])
        for use in uses:
            use.node.replace_input_with(use.idx, node.outputs[0])
    return None


RULES = [
    Rule(
        "scalar-inputs-kept-scalar",
        ("conversion-error", "divergence"),
        scalar_inputs_kept_scalar,
        "0-D graph inputs (onnx2tf adds a batch dim to every input) pass through a ReduceMax to rank 0",
    )
]
