"""InstanceNormalization and training-mode BatchNormalization spelled out as the arithmetic that
defines them.

onnx2tf 1.29 hands a scale or bias that is not a constant (a graph input, a computed value) to TF as
its graph-surgeon variable, and the conversion fails (`unsupported type ... Variable`). The op is
(x - mean) / sqrt(var + epsilon) * scale + bias, mean and (biased) variance over every dim after the
channels: ReduceMean, Sub, Mul, Add, Sqrt and Div with constant axes, scale and bias reshaped to
[C, 1, ...] so that they broadcast over the channels.

BatchNormalization with training_mode=1 normalizes with the batch's own statistics and also returns
the updated running mean and variance; onnx2tf builds only the first output (`onnx2tf's model has 1
outputs for 3 ONNX outputs`). Spelled out: mean and biased variance over every dim but the channels,
then running = input * momentum + batch statistic * (1 - momentum).

LRN: onnx2tf's tf.nn.lrn differs from onnxruntime by 2e-4 relative with beta 0.75 (the node suite's
test_lrn_default; TF's CPU kernel is not exact there). Spelled out as the spec defines it:
x / (bias + alpha / size * S) ^ beta, S the sum of x^2 over the channels [c - floor((size-1)/2),
c + ceil((size-1)/2)]: the input zero-padded along the channels, squared, and `size` shifted Slices of
it added. Padded before squaring: onnx2tf pads a computed square of shape (5, 5, 5, 5) along the wrong
axis, and the LRN's own input (there a graph input) along the right one. Exact but for the rounding of
the sum's order (no multiplication by 0, so an inf or NaN stays in its own window).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def _normalized(b: Emitter, x: ir.Value, axes: list[int], epsilon: float, scale, bias):
    """(x - mean) / sqrt(var + epsilon) * scale + bias over `axes`; also the mean and variance."""
    mean = b.with_axes("ReduceMean", x, axes)
    centered = b.op("Sub", [x, mean])
    variance = b.with_axes("ReduceMean", b.op("Mul", [centered, centered]), axes)
    spread = b.op("Sqrt", [b.op("Add", [variance, b.const(np.array(epsilon, x.dtype.numpy()))])])
    per_channel = b.const(np.array([-1] + [1] * (len(x.shape) - 2), np.int64))
    scaled = b.op("Mul", [b.op("Div", [centered, spread]), b.op("Reshape", [scale, per_channel])])
    return b.op("Add", [scaled, b.op("Reshape", [bias, per_channel])]), mean, variance


def instance_norm_decomposed(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "InstanceNormalization")
    if node is None:
        return "no InstanceNormalization at the finding"
    x, scale, bias = node.inputs
    if x.shape is None or len(x.shape) < 3 or x.dtype is None:
        return f"{node.name}: the input's rank or dtype is unknown"
    b = Emitter(model, node)
    epsilon = node.attributes.get_float("epsilon", 1e-5)
    b.replace([_normalized(b, x, list(range(2, len(x.shape))), epsilon, scale, bias)[0]])
    return None


def batch_norm_training_decomposed(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "BatchNormalization")
    if node is None or not node.attributes.get_int("training_mode", 0):
        return "no training-mode BatchNormalization at the finding"
    x, scale, bias, running_mean, running_var = node.inputs
    if x.shape is None or len(x.shape) < 2 or x.dtype is None:
        return f"{node.name}: the input's rank or dtype is unknown"
    b = Emitter(model, node)
    axes = [0, *range(2, len(x.shape))]
    y, mean, variance = _normalized(b, x, axes, node.attributes.get_float("epsilon", 1e-5), scale, bias)
    momentum = node.attributes.get_float("momentum", 0.9)
    keep, take = (b.const(np.array(v, x.dtype.numpy())) for v in (momentum, 1 - momentum))
    updated = [
        b.op("Add", [b.op("Mul", [running, keep]), b.op("Mul", [b.with_axes("Squeeze", stat, axes), take])])
        for running, stat in ((running_mean, mean), (running_var, variance))
    ]
    b.replace([y, *updated][: len(node.outputs)])
    return None


def _channel_slice(b: Emitter, x: ir.Value, start: int, end: int) -> ir.Value:
    """x[:, start:end] (Slice's starts/ends are inputs from opset 10)."""
    if b.opset >= 10:
        return b.op("Slice", [x, b.ints([start]), b.ints([end]), b.ints([1])])
    return b.op("Slice", [x], starts=[start], ends=[end], axes=[1])


def lrn_decomposed(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "LRN")
    if node is None:
        return "no LRN at the finding"
    x = node.inputs[0]
    if x.shape is None or len(x.shape) < 3 or x.dtype is None:
        return f"{node.name}: the input's rank or dtype is unknown"
    size = node.attributes.get_int("size")
    alpha = node.attributes.get_float("alpha", 1e-4)
    beta = node.attributes.get_float("beta", 0.75)
    bias = node.attributes.get_float("bias", 1.0)
    before, after = (size - 1) // 2, size // 2
    b = Emitter(model, node)
    pads = [0] * (2 * len(x.shape))
    pads[1], pads[len(x.shape) + 1] = before, after
    padded = b.op("Pad", [x, b.ints(pads)]) if b.opset >= 11 else b.op("Pad", [x], pads=pads)
    squares = b.op("Mul", [padded, padded])
    # Shift k holds channel c + k - before at c; the last shift runs to the end of the padded channels.
    end = np.iinfo(np.int64).max
    shifts = [_channel_slice(b, squares, k, k - (size - 1) if k < size - 1 else end) for k in range(size)]
    total = shifts[0]
    for shift in shifts[1:]:
        total = b.op("Add", [total, shift])
    dtype = x.dtype.numpy()
    scaled = b.op("Mul", [total, b.const(np.array(alpha / size, dtype))])
    base = b.op("Add", [scaled, b.const(np.array(bias, dtype))])
    b.replace([b.op("Div", [x, b.op("Pow", [base, b.const(np.array(beta, dtype))])])])
    return None


RULES = [
    Rule(
        "instance-norm-decomposed",
        ("conversion-error", "divergence"),
        instance_norm_decomposed,
        "InstanceNormalization as ReduceMean/Sub/Mul/Sqrt/Div over the spatial dims, scale and bias reshaped",
        ops=("InstanceNormalization",),
    ),
    Rule(
        "batch-norm-training-decomposed",
        ("conversion-error", "divergence"),
        batch_norm_training_decomposed,
        "training-mode BatchNormalization (onnx2tf builds one of its three outputs) spelled out",
        ops=("BatchNormalization",),
    ),
    Rule(
        "lrn-decomposed",
        ("conversion-error", "divergence"),
        lrn_decomposed,
        "LRN as x / (bias + alpha/size * windowed channel sum of x^2)^beta: Pad, shifted Slices, Add, Pow",
        ops=("LRN",),
    ),
]
