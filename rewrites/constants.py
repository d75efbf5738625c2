"""Constants onnx2tf cannot see through: a ConstantOfShape with a constant shape becomes a weight.

Exporters (and older model zoos) build weights with ConstantOfShape; onnx2tf then meets a computed
tensor where it expects a weight (seen: `ValueError: axes don't match array` in its Conv), and the
onnxscript optimizer does not fold outputs above its size limit. The rule is exact: it writes the very
tensor ConstantOfShape would produce.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import replace_node
from convfix.rules import Rule, RuleContext

MAX_BYTES = 512 * 1024 * 1024


def _materialized(node: ir.Node) -> np.ndarray | None:
    shape_tensor = ir.convenience.get_const_tensor(node.inputs[0]) if node.inputs and node.inputs[0] else None
    if shape_tensor is None:
        return None
    shape = shape_tensor.numpy()
    fill = (
        node.attributes["value"].as_tensor().numpy()
        if "value" in node.attributes
        else np.zeros(1, np.float32)
    )
    dims = tuple(int(d) for d in shape.reshape(-1))
    if int(np.prod(dims, dtype=np.int64)) * fill.dtype.itemsize > MAX_BYTES:
        return None
    return np.full(dims, fill.reshape(-1)[0], dtype=fill.dtype)


def materialize_constant_of_shape(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ConstantOfShape of the main graph whose shape is known becomes an initializer."""
    done = 0
    for node, path in list(walk(model.graph)):
        if path or node.op_type != "ConstantOfShape" or node.domain not in ("", "ai.onnx"):
            continue
        array = _materialized(node)
        if array is None:
            continue
        weight = ir.Value(name=f"{node.outputs[0].name}_value", const_value=ir.tensor(array))
        model.graph.register_initializer(weight)
        replace_node(node, [weight])
        done += 1
    return None if done else "no ConstantOfShape with a constant shape (or all too large)"


RULES = [
    Rule(
        "materialize-constant-of-shape",
        ("conversion-error", "divergence"),
        materialize_constant_of_shape,
        "ConstantOfShape with a constant shape becomes a weight (onnx2tf expects weights there)",
    )
]
