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
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def instance_norm_decomposed(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "InstanceNormalization")
    if node is None:
        return "no InstanceNormalization at the finding"
    x, scale, bias = node.inputs
    if x.shape is None or len(x.shape) < 3 or x.dtype is None:
        return f"{node.name}: the input's rank or dtype is unknown"
    rank = len(x.shape)
    b = Emitter(model, node)
    centered = b.op("Sub", [x, b.with_axes("ReduceMean", x, list(range(2, rank)))])
    variance = b.with_axes("ReduceMean", b.op("Mul", [centered, centered]), list(range(2, rank)))
    epsilon = np.array(node.attributes.get_float("epsilon", 1e-5), x.dtype.numpy())
    spread = b.op("Sqrt", [b.op("Add", [variance, b.const(epsilon)])])
    normalized = b.op("Div", [centered, spread])
    per_channel = b.const(np.array([-1] + [1] * (rank - 2), np.int64))
    scaled = b.op("Mul", [normalized, b.op("Reshape", [scale, per_channel])])
    result = b.op("Add", [scaled, b.op("Reshape", [bias, per_channel])])
    b.replace([result])
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
