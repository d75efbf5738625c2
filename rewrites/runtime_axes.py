"""Unsqueeze and Squeeze whose axes are a run-time input (onnx2tf reads them as Python ints: "'KerasTensor'
object cannot be interpreted as an integer"), as a Reshape to the shape those axes give, computed in the
graph from the axes it is given: the axes stay an input and any valid value of them works. The output
rank is static (the number of axes is), so every value has a static shape. Exact.

Unsqueeze: position j of the output is new (1) if an axis names it, else the next dim of the input.
Squeeze: output position i takes the i-th dim no axis names (found with ArgMax over a constant grid).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, computed_at_run_time, standard_node
from convfix.rules import Rule, RuleContext

INT64 = ir.DataType.INT64


def runtime_axes(node: ir.Node) -> bool:
    """An Unsqueeze or Squeeze (opset 13+ form) whose axes input is computed at run time."""
    axes = node.inputs[1] if len(node.inputs) > 1 else None
    return axes is not None and computed_at_run_time(axes)


def _named(b: Emitter, axes: ir.Value, rank: int) -> ir.Value:
    """[rank] int64: 1 where an axis (negative ones counted from the end) names the position."""
    axes = b.from_the_end(b.op("Cast", [axes], to=INT64.value), rank)
    hits = b.op(
        "Equal",
        [
            b.op("Reshape", [axes, b.ints([-1, 1])]),
            b.const(np.arange(rank, dtype=np.int64)[None, :]),
        ],
    )
    return b.op("ReduceMax", [b.op("Cast", [hits], to=INT64.value), b.ints([0])], keepdims=0)


def _count(value: ir.Value) -> int | None:
    if value.shape is None or len(value.shape) > 1:
        return None
    count = value.shape[0] if len(value.shape) == 1 else 1
    return count if isinstance(count, int) else None


def unsqueeze_runtime_axes(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Unsqueeze")
    if node is None or not runtime_axes(node):
        return "not an Unsqueeze with run-time axes"
    data, axes = node.inputs[0], node.inputs[1]
    count = _count(axes)
    if data.shape is None or count is None:
        return "the input's rank or the number of axes is unknown"
    rank = len(data.shape) + count
    b = Emitter(model, node)
    new = _named(b, axes, rank)
    # the input dim each old position takes: how many old positions come before it
    old = b.op("CumSum", [b.op("Sub", [b.ints([1]), new]), b.const(np.array(0, np.int64))])
    source = b.op("Max", [b.op("Sub", [old, b.ints([1])]), b.ints([0])])
    dims = b.op("Gather", [b.op("Shape", [data]), source], axis=0)
    target = b.op("Where", [b.op("Cast", [new], to=ir.DataType.BOOL.value), b.ints([1]), dims])
    b.replace([b.op("Reshape", [data, target])])
    return None


def squeeze_runtime_axes(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Squeeze")
    if node is None or not runtime_axes(node):
        return "not a Squeeze with run-time axes"
    data, axes = node.inputs[0], node.inputs[1]
    count = _count(axes)
    if data.shape is None or not count or count > len(data.shape):
        return "the input's rank or the number of axes is unknown (or there are none)"
    rank = len(data.shape)
    b = Emitter(model, node)
    kept = b.op("Sub", [b.ints([1]), _named(b, axes, rank)])
    # rank among the kept positions of each position; output i takes the kept position of rank i
    order = b.op("Sub", [b.op("CumSum", [kept, b.const(np.array(0, np.int64))]), b.ints([1])])
    wanted = b.const(np.arange(rank - count, dtype=np.int64)[:, None])
    match = b.op(
        "And",
        [
            b.op("Equal", [b.op("Unsqueeze", [order, b.ints([0])]), wanted]),
            b.op("Cast", [b.op("Unsqueeze", [kept, b.ints([0])])], to=ir.DataType.BOOL.value),
        ],
    )
    source = b.op("ArgMax", [b.op("Cast", [match], to=INT64.value)], axis=1, keepdims=0)
    target = b.op("Gather", [b.op("Shape", [data]), source], axis=0)
    b.replace([b.op("Reshape", [data, target])])
    return None


_KINDS = ("unsupported-op", "conversion-error", "divergence")
RULES = [
    Rule(
        "unsqueeze-runtime-axes",
        _KINDS,
        unsqueeze_runtime_axes,
        "Unsqueeze with run-time axes as a Reshape to the shape the axes give, computed in the graph",
        ops=("Unsqueeze",),
    ),
    Rule(
        "squeeze-runtime-axes",
        _KINDS,
        squeeze_runtime_axes,
        "Squeeze with run-time axes as a Reshape to the dims no axis names, computed in the graph",
        ops=("Squeeze",),
    ),
]
