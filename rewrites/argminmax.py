"""ArgMax/ArgMin with select_last_index=1 as the first index on the reversed axis.

onnx2tf 1.29 builds select_last_index with `tf.reverse` and a scalar axis, which TF rejects (the
conversion fails). The last index of the extreme is `(n - 1) - first index in reverse(x)`: exact.
The axis is reversed by a Gather of the indices n-1..0, not by a Slice with step -1, which onnx2tf
converts without reversing anything (seen here: a silent mismatch), so the axis length must be static.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import int64_constant, replace_node
from convfix.rules import Rule, RuleContext

OPS = ("ArgMax", "ArgMin")


def _selects_last(node: ir.Node) -> bool:
    return node.attributes.get_int("select_last_index", 0) == 1


def _axis(node: ir.Node) -> int | None:
    """The axis, made non-negative, if the input's rank and that axis's length are known."""
    x = node.inputs[0]
    axis = node.attributes.get_int("axis", 0)
    if x.shape is None:
        return None
    axis = axis + len(x.shape) if axis < 0 else axis
    return axis if 0 <= axis < len(x.shape) and isinstance(x.shape[axis], int) else None


def _reverse_first_index(node: ir.Node, axis: int) -> None:
    x = node.inputs[0]
    n = x.shape[axis]
    indices = int64_constant(list(range(n - 1, -1, -1)), f"{node.name}_reversed_indices")
    reverse = ir.node(
        "Gather", [x, indices.outputs[0]], attributes={"axis": axis}, name=f"{node.name}_reverse"
    )
    keepdims = node.attributes.get_int("keepdims", 1)
    first = ir.node(
        node.op_type,
        [reverse.outputs[0]],
        attributes={"axis": axis, "keepdims": keepdims},
        name=f"{node.name}_first",
    )
    last = int64_constant(n - 1, f"{node.name}_last")
    result = ir.node("Sub", [last.outputs[0], first.outputs[0]], name=f"{node.name}_index")
    graph = node.graph
    graph.insert_before(node, [indices, reverse, first, last, result])
    replace_node(node, [result.outputs[0]])


def reverse_last_index(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ArgMax/ArgMin with select_last_index=1 (they all fail alike), the finding's included."""
    nodes = [n for n, _ in walk(model.graph) if n.domain in ("", "ai.onnx") and n.op_type in OPS]
    nodes = [n for n in nodes if _selects_last(n)]
    if not nodes:
        return "no ArgMax/ArgMin with select_last_index=1"
    axes = [_axis(node) for node in nodes]
    if None in axes:
        return "the length of the axis is not static: its reversal cannot be spelled out"
    for node, axis in zip(nodes, axes, strict=True):
        _reverse_first_index(node, axis)
    return None


RULES = [
    Rule(
        "argminmax-last-index",
        ("conversion-error", "divergence"),
        reverse_last_index,
        "ArgMax/ArgMin select_last_index=1 as (n-1) - the first index over the axis reversed by Gather",
        ops=OPS,
    )
]
