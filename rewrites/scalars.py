"""Scalars kept scalar inside onnx2tf.

onnx2tf makes every graph input a Keras Input, which adds a batch dim: a 0-D input reaches the ops as
a 1-D tensor, and ops that need a scalar fail (`Shape must be rank 0 but is rank 1` in Range, the
window ops, Einsum). Computed scalars can arrive as 1-D tensors too (a Gather of one element of a
shape, as AffineGrid's body does before its Range). A ReduceMax with keepdims=0 over a scalar is the
identity in ONNX, and in TF it brings a 1-D tensor back to rank 0; the optimizer leaves it in place.
The rule wraps every 0-D graph input, and the computed bounds of every Range. Exact.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import computed_at_run_time
from convfix.rules import Rule, RuleContext

_MARK = "_kept_scalar"


def _kept_scalar(value: ir.Value, uses: list[ir.Usage], before: ir.Node, taken: set[str]) -> None:
    name = f"{value.name}{_MARK}"
    while name in taken:
        name = f"{name}_"
    taken.add(name)
    node = ir.node("ReduceMax", [value], attributes={"keepdims": 0}, name=name)
    before.graph.insert_before(before, node)
    node.outputs[0].dtype, node.outputs[0].shape = value.dtype, ir.Shape([])
    for use in uses:
        use.node.replace_input_with(use.idx, node.outputs[0])


def _is_wrapper(node: ir.Node | None) -> bool:
    return node is not None and (node.name or "").endswith(_MARK)


def _wrapped(value: ir.Value) -> bool:
    return _is_wrapper(value.producer())


def scalars_kept_scalar(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    inputs = [
        v
        for v in model.graph.inputs
        if v.shape is not None and len(v.shape) == 0 and any(not _is_wrapper(use.node) for use in v.uses())
    ]
    ranges = [n for n, _ in walk(model.graph) if n.op_type == "Range" and n.domain in ("", "ai.onnx")]
    bounds = [
        (node, index)
        for node in ranges
        for index, value in enumerate(node.inputs)
        if value is not None
        and computed_at_run_time(value)
        and not _wrapped(value)
        and not (value.is_graph_input() and value in inputs)
    ]
    if not inputs and not bounds:
        return "no scalar graph input and no computed Range bound"
    first = next(iter(model.graph))
    taken = {n.name for n, _ in walk(model.graph) if n.name}
    for value in inputs:
        uses = [u for u in value.uses() if not _is_wrapper(u.node)]
        _kept_scalar(value, uses, first, taken)
    for node, index in bounds:
        value = node.inputs[index]
        _kept_scalar(value, [u for u in value.uses() if u.node is node and u.idx == index], node, taken)
    return None


RULES = [
    Rule(
        "scalars-kept-scalar",
        ("conversion-error", "divergence"),
        scalars_kept_scalar,
        "0-D graph inputs and computed Range bounds (onnx2tf may hand them on as 1-D) through a ReduceMax",
    )
]
