"""InstanceNormalization spelled out as the arithmetic that defines it.

onnx2tf 1.29 hands a scale or bias that is not a constant (a graph input, a computed value) to TF as
its graph-surgeon variable, and the conversion fails (`unsupported type ... Variable`). The op is
(x - mean) / sqrt(var + epsilon) * scale + bias, mean and (biased) variance over every dim after the
channels: ReduceMean, Sub, Mul, Add, Sqrt and Div with constant axes, scale and bias reshaped to
[C, 1, ...] so that they broadcast over the channels.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import find_node, replace_node
from convfix.rules import Rule, RuleContext


def _opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 18))


class _Builder:
    """Emits nodes before the node being replaced, for the model's opset."""

    def __init__(self, node: ir.Node, opset: int) -> None:
        self.tape = ir.tape.Tape()
        self.opset = opset
        self.prefix = node.name

    def op(self, op_type: str, inputs: list[ir.Value], **attributes) -> ir.Value:
        name = f"{self.prefix}_{op_type}_{len(self.tape.nodes)}"
        return self.tape.op(op_type, inputs, attributes or None, name=name)

    def const(self, array: np.ndarray) -> ir.Value:
        return self.op("Constant", [], value=ir.tensor(array))

    def mean(self, x: ir.Value, axes: list[int]) -> ir.Value:
        """ReduceMean keeping dims (axes an input from opset 18)."""
        if self.opset >= 18:
            return self.op("ReduceMean", [x, self.const(np.array(axes, np.int64))])
        return self.op("ReduceMean", [x], axes=axes)


def instance_norm_decomposed(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type != "InstanceNormalization":
        return "no InstanceNormalization at the finding"
    x, scale, bias = node.inputs
    if x.shape is None or len(x.shape) < 3 or x.dtype is None:
        return f"{node.name}: the input's rank or dtype is unknown"
    rank = len(x.shape)
    b = _Builder(node, _opset(model))
    centered = b.op("Sub", [x, b.mean(x, list(range(2, rank)))])
    variance = b.mean(b.op("Mul", [centered, centered]), list(range(2, rank)))
    epsilon = np.array(node.attributes.get_float("epsilon", 1e-5), x.dtype.numpy())
    spread = b.op("Sqrt", [b.op("Add", [variance, b.const(epsilon)])])
    normalized = b.op("Div", [centered, spread])
    per_channel = b.const(np.array([-1] + [1] * (rank - 2), np.int64))
    scaled = b.op("Mul", [normalized, b.op("Reshape", [scale, per_channel])])
    result = b.op("Add", [scaled, b.op("Reshape", [bias, per_channel])])
    node.graph.insert_before(node, b.tape.nodes)
    replace_node(node, [result])
    return None


RULES = [
    Rule(
        "instance-norm-decomposed",
        ("conversion-error", "divergence"),
        instance_norm_decomposed,
        "InstanceNormalization as ReduceMean/Sub/Mul/Sqrt/Div over the spatial dims, scale and bias reshaped",
        ops=("InstanceNormalization",),
    ),
]
