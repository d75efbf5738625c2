"""Sum and Mean with broadcasting inputs become chains of Add (and a Div for Mean).

onnx2tf builds Sum as `tf.math.add_n` and Mean on `tf.stack`, both of which need equal shapes: any
broadcasting (a scalar plus a vector, as in the expanded Gelu) fails to convert. Add broadcasts.
The additions run left to right, as onnxruntime and the reference evaluator do.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import replace_node
from convfix.rules import Rule, RuleContext

OPS = ("Sum", "Mean")


def _broadcasts(node: ir.Node) -> bool:
    """True unless every input is known to have the same shape (then add_n/stack would work)."""
    shapes = [v.shape for v in node.inputs if v is not None]
    return any(s is None for s in shapes) or len({tuple(s) for s in shapes}) > 1


def _chain(node: ir.Node) -> None:
    inputs = [v for v in node.inputs if v is not None]
    graph = node.graph
    added = []
    total = inputs[0]
    for index, value in enumerate(inputs[1:]):
        add = ir.node("Add", [total, value], name=f"{node.name}_add_{index}")
        added.append(add)
        total = add.outputs[0]
    if node.op_type == "Mean" and len(inputs) > 1:
        dtype = node.outputs[0].dtype or inputs[0].dtype
        count = ir.node("Constant", [], attributes={"value": ir.tensor(np.array(len(inputs), dtype.numpy()))})
        div = ir.node("Div", [total, count.outputs[0]], name=f"{node.name}_div")
        added += [count, div]
        total = div.outputs[0]
    if not added:  # a single input: the op is the identity
        added.append(ir.node("Identity", [total], name=f"{node.name}_identity"))
        total = added[-1].outputs[0]
    graph.insert_before(node, added)
    replace_node(node, [total])


def chain_variadic(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """The finding's node and every other Sum/Mean that broadcasts (they all fail alike)."""
    nodes = [
        n
        for n, path in walk(model.graph)
        if n.domain in ("", "ai.onnx")
        and n.op_type in OPS
        and ((n.name == finding.node and path == finding.path) or _broadcasts(n))
    ]
    if not nodes:
        return "no Sum or Mean node here"
    for node in nodes:
        if node.outputs[0].dtype is None and node.op_type == "Mean":
            return "the dtype of a Mean is unknown: cannot make its divisor"
    for node in nodes:
        _chain(node)
    return None


RULES = [
    Rule(
        "chain-sum-mean",
        ("conversion-error", "divergence"),
        chain_variadic,
        "Sum/Mean over broadcasting inputs as a chain of Add (then Div by the count for Mean)",
        ops=OPS,
    )
]
