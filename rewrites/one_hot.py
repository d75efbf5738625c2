"""OneHot and Hardmax, whose new or reduced axis onnx2tf places wrongly, as comparisons with positions.

Seen on the node suite: OneHot without an axis came back [12, 3] for [3, 12], Hardmax over axis 0 of a
rank-3 tensor came back with its dims reversed; neither fits any layout, so they are wrong answers.
Both are "position == index" tests along one axis: Equal of the index (unsqueezed at that axis)
with a constant arange laid along it, then Where (OneHot's off/on values) or Cast (Hardmax's 0/1).
Hardmax's index is ArgMax's, which picks the first maximum as Hardmax does. Exact; the axis length
(OneHot's depth, Hardmax's dim) must be a constant, except a OneHot depth on the last axis, where
the positions are a Range over the run-time depth.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def _positions(b: Emitter, length: int, axis: int, rank: int) -> ir.Value:
    """0..length-1 laid along `axis` of a rank-`rank` tensor of ones elsewhere."""
    shape = [1] * rank
    shape[axis] = length
    return b.const(np.arange(length, dtype=np.int64).reshape(shape))


def onehot_as_equal(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "OneHot")
    if node is None:
        return "not a OneHot node"
    indices, depth, values = node.inputs
    if indices.shape is None:
        return "the indices' rank is unknown"
    rank = len(indices.shape) + 1
    axis = node.attributes.get_int("axis", -1)
    axis = axis + rank if axis < 0 else axis
    depth_tensor = ir.convenience.get_const_tensor(depth)
    if depth_tensor is None and axis != rank - 1:
        return "the depth is not a constant and the new axis is not the last"
    b = Emitter(model, node)
    if depth_tensor is None:
        scalar = b.op("Reshape", [depth, b.const(np.zeros(0, np.int64))])
        length = b.op("Cast", [scalar], to=ir.DataType.INT64)
        positions = b.op("Range", [b.const(np.array(0, np.int64)), length, b.const(np.array(1))])
    else:
        count = int(depth_tensor.numpy().reshape(-1)[0])
        length, positions = b.const(np.array(count, np.int64)), _positions(b, count, axis, rank)
    index = b.from_the_end(b.op("Cast", [indices], to=ir.DataType.INT64), length)
    index = b.with_axes("Unsqueeze", index, [axis])
    hot = b.op("Equal", [index, positions])
    off, on = (b.op("Gather", [values, b.const(np.array(i, np.int64))]) for i in (0, 1))
    result = b.op("Where", [hot, on, off])
    b.replace([result])
    return None


def hardmax_as_argmax(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Hardmax")
    if node is None:
        return "not a Hardmax node"
    x = node.inputs[0]
    if x.shape is None or x.dtype is None:
        return "the input's rank or dtype is unknown"
    rank = len(x.shape)
    axis = node.attributes.get_int("axis", -1)
    axis = axis + rank if axis < 0 else axis
    if not isinstance(x.shape[axis], int):
        return "the length of the axis is not static"
    b = Emitter(model, node)
    first = b.op("ArgMax", [x], axis=axis, keepdims=1)
    hot = b.op("Equal", [first, _positions(b, x.shape[axis], axis, rank)])
    result = b.op("Cast", [hot], to=x.dtype)
    b.replace([result])
    return None


_KINDS = ("conversion-error", "divergence")
RULES = [
    Rule(
        "onehot-as-equal",
        _KINDS,
        onehot_as_equal,
        "OneHot as Equal(index, constant positions along the axis) selecting its on/off values",
        ops=("OneHot",),
    ),
    Rule(
        "hardmax-as-argmax",
        _KINDS,
        hardmax_as_argmax,
        "Hardmax as Equal(ArgMax, constant positions along the axis) cast to the input's dtype",
        ops=("Hardmax",),
    ),
]
