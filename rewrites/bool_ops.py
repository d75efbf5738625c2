"""Expand of a bool tensor, carried out on 0/1 integers and cast back.

onnx2tf 1.29 implements Expand as a multiplication by `tf.ones` of the output shape; TF has no bool
multiply, so an Expand of a bool tensor (an attention mask broadcast to (batch, 1, seq, seq) when the
dims are dynamic) fails the conversion (`DataType bool not in list of allowed values`, or a bool
KerasTensor passed to a TF API). Cast to int32, Expand, Cast back to bool is exact: the casts map
False/True to 0/1 and back, and Expand only copies elements. The finding's node is rewritten, and with
it every Expand of a bool tensor: they all fail alike, so one conversion covers them.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import find_node, replace_node
from convfix.rules import Rule, RuleContext


def bool_expand(node: ir.Node) -> bool:
    return (
        node.op_type == "Expand"
        and node.domain in ("", "ai.onnx")
        and node.inputs[0] is not None
        and node.inputs[0].dtype == ir.DataType.BOOL
    )


def _cast(x: ir.Value, to: ir.DataType, name: str) -> ir.Node:
    node = ir.node("Cast", [x], attributes={"to": to}, name=name)
    node.outputs[0].dtype, node.outputs[0].shape = to, x.shape
    return node


def _rewrite(node: ir.Node) -> None:
    x, shape, name = node.inputs[0], node.inputs[1], node.name
    as_int = _cast(x, ir.DataType.INT32, f"{name}_to_int")
    expanded = ir.node("Expand", [as_int.outputs[0], shape], name=f"{name}_int")
    expanded.outputs[0].dtype, expanded.outputs[0].shape = ir.DataType.INT32, node.outputs[0].shape
    as_bool = _cast(expanded.outputs[0], ir.DataType.BOOL, f"{name}_to_bool")
    node.graph.insert_before(node, [as_int, expanded, as_bool])
    replace_node(node, [as_bool.outputs[0]])


def expand_bool(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """The finding's Expand, if its input is bool, and every other Expand of a bool tensor."""
    target = find_node(model, finding)
    if target is not None and not bool_expand(target):
        return f"{target.name}: not an Expand of a bool tensor (or its dtype is unknown)"
    nodes = [n for n, _ in walk(model.graph) if bool_expand(n)]
    if not nodes:
        return "no Expand of a bool tensor"
    for node in nodes:
        _rewrite(node)
    return None


RULES = [
    Rule(
        "expand-bool",
        ("dtype", "conversion-error", "divergence"),
        expand_bool,
        "Expand of a bool tensor as Cast to int32, Expand, Cast back (onnx2tf expands by a multiplication)",
        ops=("Expand",),
    )
]
