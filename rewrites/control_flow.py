"""`If` rewrites: a constant condition folds to its branch; pure, shape-compatible branches become `Where`.

Both are IR passes on the `If` node named by the finding. Branch nodes move into the enclosing graph
(outer-scope references stay valid: they already point at that graph's values), so the converter never
sees a subgraph.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import find_node, replace_node
from convfix.rules import Rule, RuleContext

# Ops whose result differs between two evaluations, or that have effects: never computed speculatively.
_IMPURE = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "Dropout",
    "If",
    "Loop",
    "Scan",
}


def _inline_branch(if_node: ir.Node, branch: ir.Graph) -> list[ir.Value]:
    """Move the branch's nodes and initializers before if_node; return the branch's output values."""
    parent = if_node.graph
    for name, value in list(branch.initializers.items()):
        branch.initializers.pop(name)
        parent.register_initializer(value)
    for node in list(branch):
        branch.remove(node)
        parent.insert_before(if_node, node)
    outputs = list(branch.outputs)
    branch.outputs.clear()
    return outputs


def _constant_condition(if_node: ir.Node) -> bool | None:
    condition = if_node.inputs[0]
    tensor = None if condition is None else ir.convenience.get_const_tensor(condition)
    return None if tensor is None else bool(np.asarray(tensor.numpy()).item())


def fold_constant_if(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "If":
        return "not an If node"
    condition = _constant_condition(node)
    if condition is None:
        return "the condition is not a constant"
    branch = node.attributes["then_branch" if condition else "else_branch"].as_graph()
    replace_node(node, _inline_branch(node, branch))
    return None


def _impure_ops(graph: ir.Graph) -> set[str]:
    return {n.op_type for n, _ in walk(graph) if n.op_type in _IMPURE}


def _shapes_equal(a: ir.Value, b: ir.Value) -> bool:
    return a.shape is not None and b.shape is not None and a.shape == b.shape and a.dtype == b.dtype


def _scalar_condition(if_node: ir.Node) -> ir.Value | None:
    """The condition as a rank-0 tensor (If takes any one-element tensor; Where would broadcast it)."""
    condition = if_node.inputs[0]
    if condition.shape is None or any(d != 1 for d in condition.shape):
        return None
    if len(condition.shape) == 0:
        return condition
    empty = ir.node("Constant", [], attributes={"value": ir.tensor(np.zeros((0,), np.int64))})
    reshape = ir.node("Reshape", [condition, empty.outputs[0]], name=f"{if_node.name}_cond_scalar")
    if_node.graph.insert_before(if_node, [empty, reshape])
    return reshape.outputs[0]


def if_to_where(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "If":
        return "not an If node"
    then_graph = node.attributes["then_branch"].as_graph()
    else_graph = node.attributes["else_branch"].as_graph()
    impure = _impure_ops(then_graph) | _impure_ops(else_graph)
    if impure:
        return f"a branch holds {sorted(impure)}: not safe to compute both"
    for then_out, else_out in zip(then_graph.outputs, else_graph.outputs, strict=True):
        if not _shapes_equal(then_out, else_out):
            return (
                f"branch outputs differ or are unknown in shape/dtype: {then_out.shape} vs {else_out.shape}"
            )
    condition = _scalar_condition(node)
    if condition is None:
        return "the condition's shape is unknown: Where could broadcast it differently"
    then_values = _inline_branch(node, then_graph)
    else_values = _inline_branch(node, else_graph)
    selected = []
    for index, (then_value, else_value) in enumerate(zip(then_values, else_values, strict=True)):
        where = ir.node("Where", [condition, then_value, else_value], name=f"{node.name}_where_{index}")
        node.graph.insert_before(node, where)
        where.outputs[0].dtype, where.outputs[0].shape = then_value.dtype, then_value.shape
        selected.append(where.outputs[0])
    replace_node(node, selected)
    return None


RULES = [
    Rule(
        "fold-constant-if",
        ("control-flow",),
        fold_constant_if,
        "an If whose condition is a constant is replaced by the branch it takes",
        ops=("If",),
    ),
    Rule(
        "if-to-where",
        ("control-flow",),
        if_to_where,
        "a pure If with shape-compatible branches computes both and selects with Where",
        ops=("If",),
    ),
]
