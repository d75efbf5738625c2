"""ScatterElements with reduction add/mul/max/min as a one-hot reduction over the scattered axis.

onnx2tf 1.29 stops on any reduction but "none" (`ScatterElements currently supports only
reduction=['none']`, a sys.exit), and its ScatterND ignores the reduction altogether, so neither
scatters with a reduction. PyTorch's scatter_add / scatter_reduce export these. On axis a, position m
of the output receives every update whose (normalized) index equals m: onehot = Equal(index, m) over
a new axis after a, the updates spread over it with Where (the reduction's identity elsewhere: 0, 1,
the lowest or highest value) and reduced over a. add/mul then combine with data; max/min take
Max/Min with data where some update landed (`touched`) and keep data elsewhere. Exact up to the
order of float additions and multiplications (data + (u1 + u2) instead of (data + u1) + u2).
Indices shorter than data on another axis are padded with an index that matches nothing.
Needs static shapes off the axis; along it data's length may be a run-time value (bincount's max + 1:
the positions are then a Range over it). A static one-hot tensor is capped at MAX_ONEHOT elements.
Every such ScatterElements is rewritten (they all fail alike).

ScatterND with a reduction is worse: onnx2tf converts it ignoring the reduction (a silent mismatch).
Its k-long index tuples address the first k dims of data, so with data seen as [M, R] (M the product
of those k dims) each tuple is one row number, and the scatter is a ScatterElements over axis 0 of
that matrix, with the same reduction; the rule above then takes it. Exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import Emitter
from convfix.rules import Rule, RuleContext

MAX_ONEHOT = 1 << 24
REDUCE = {"add": "ReduceSum", "mul": "ReduceProd", "max": "ReduceMax", "min": "ReduceMin"}
COMBINE = {"add": "Add", "mul": "Mul", "max": "Max", "min": "Min"}


class _Plan(NamedTuple):
    axis: int
    length: int | None  # None: data's length along the axis is known at run time only
    shortfall: list[int]


def _reduction(node: ir.Node) -> str:
    attr = node.attributes.get("reduction")
    return "none" if attr is None else attr.as_string()


def _reducing_scatter(node: ir.Node, op_type: str = "ScatterElements") -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx") and _reduction(node) != "none"


def _identity(reduction: str, dtype: np.dtype) -> np.ndarray:
    """The value the reduction ignores: 0, 1, the lowest or the highest value of dtype."""
    if reduction in ("add", "mul"):
        return np.array(0 if reduction == "add" else 1, dtype)
    if dtype.kind == "f":
        return np.array(-np.inf if reduction == "max" else np.inf, dtype)
    info = np.iinfo(dtype)
    return np.array(info.min if reduction == "max" else info.max, dtype)


def _plan(node: ir.Node) -> _Plan | str:
    """The axis, the length of data along it, and how far indices fall short of data on every other
    dim, or why the node cannot be rewritten. A dim may be dynamic where data and indices share it
    (a batch): nothing is padded there."""
    data, indices = node.inputs[0], node.inputs[1]
    if data.shape is None or indices.shape is None or len(data.shape) != len(indices.shape):
        return f"{node.name}: the ranks of data and indices are unknown"
    if data.dtype is None or indices.dtype is None or data.dtype.numpy().kind not in "fiu":
        return f"{node.name}: data is not numeric (or a dtype is unknown)"
    axis = node.attributes.get_int("axis", 0)
    axis = axis + len(data.shape) if axis < 0 else axis
    shortfall = []
    for k, (d, i) in enumerate(zip(data.shape, indices.shape, strict=True)):
        if k == axis:  # never padded; its length may be known only at run time (bincount's max + 1)
            shortfall.append(0)
        elif isinstance(d, int) and isinstance(i, int):
            shortfall.append(d - i)
        elif d == i and str(d):
            shortfall.append(0)
        else:
            return f"{node.name}: a dim of data or indices off the axis is dynamic and not shared by both"
    length = data.shape[axis]
    static = [i for i in indices.shape if isinstance(i, int)]
    if isinstance(length, int) and int(np.prod(static, dtype=np.int64)) * length > MAX_ONEHOT:
        return f"{node.name}: the one-hot tensor would exceed {MAX_ONEHOT} elements"
    return _Plan(axis, length if isinstance(length, int) else None, shortfall)


def _normalized_indices(b: Emitter, indices: ir.Value, length, pads: list[int]) -> ir.Value:
    """index + length where negative, padded with `length` (an index no position matches); `length`
    is a number or a scalar value of the indices' dtype."""
    dtype = indices.dtype.numpy()
    normalized = b.from_the_end(indices, length, dtype)
    if not any(pads):
        return normalized
    fill = length if isinstance(length, ir.Value) else b.const(np.array(length, dtype))
    return b.op("Pad", [normalized, b.ints(pads), fill])


def _positions(b: Emitter, data: ir.Value, plan: _Plan, dtype: np.dtype) -> tuple[ir.Value, object]:
    """0..length-1 laid along a new axis after the scattered one, and the length (a number, or a
    scalar value read from data's shape at run time)."""
    axis, rank = plan.axis, len(plan.shortfall)
    shape = (1,) * (axis + 1) + (-1,) + (1,) * (rank - axis - 1)
    if plan.length is not None:
        return b.const(np.arange(plan.length, dtype=dtype).reshape(shape)), plan.length
    measured = b.op("Shape", [data], start=axis, end=axis + 1)
    length = b.op("Cast", [b.op("Reshape", [measured, b.ints([])])], to=ir.DataType.from_numpy(dtype))
    zero, one = (b.const(np.array(v, dtype)) for v in (0, 1))
    return b.op("Reshape", [b.op("Range", [zero, length, one]), b.ints(list(shape))]), length


def _rewrite(model: ir.Model, node: ir.Node, plan: _Plan) -> None:
    data, indices, updates = node.inputs[:3]
    axis, shortfall = plan.axis, plan.shortfall
    rank = len(shortfall)
    reduction, dtype = _reduction(node), data.dtype.numpy()
    b = Emitter(model, node)
    pads = [0] * rank + shortfall
    if any(pads):
        updates = b.op("Pad", [updates, b.ints(pads)])
    positions, length = _positions(b, data, plan, indices.dtype.numpy())
    index = _normalized_indices(b, indices, length, pads)
    onehot = b.op("Equal", [b.op("Unsqueeze", [index, b.ints([axis + 1])]), positions])
    spread = b.op(
        "Where",
        [onehot, b.op("Unsqueeze", [updates, b.ints([axis + 1])]), b.const(_identity(reduction, dtype))],
    )
    reduced = b.with_axes(REDUCE[reduction], spread, [axis], keepdims=0)
    result = b.op(COMBINE[reduction], [data, reduced])
    if reduction in ("max", "min"):
        touched = b.with_axes("ReduceMax", b.op("Cast", [onehot], to=ir.DataType.INT32), [axis], keepdims=0)
        result = b.op("Where", [b.op("Cast", [touched], to=ir.DataType.BOOL), result, data])
    b.replace([result])


def scatter_reduction_as_onehot(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ScatterElements with a reduction (onnx2tf refuses them all alike), the finding's included."""
    nodes = [n for n, _ in walk(model.graph) if _reducing_scatter(n)]
    if not nodes:
        return "no ScatterElements with a reduction"
    plans = [_plan(n) for n in nodes]
    problem = next((p for p in plans if isinstance(p, str)), None)
    if problem:
        return problem
    for node, plan in zip(nodes, plans, strict=True):
        _rewrite(model, node, plan)
    return None


def _as_rows(model: ir.Model, node: ir.Node) -> str | None:
    """ScatterND(data, indices, updates) as Reshape(ScatterElements over the rows of data as [M, R])."""
    data, indices, updates = node.inputs[:3]
    if any(v.shape is None or not v.shape.is_static() for v in (data, indices)):
        return f"{node.name}: the shapes of data and indices are not static"
    dims, index_dims = list(data.shape.numpy()), list(indices.shape.numpy())
    depth = index_dims[-1]
    rows, row_size = int(np.prod(dims[:depth])), int(np.prod(dims[depth:]))
    count = int(np.prod(index_dims[:-1]))
    strides = np.array([int(np.prod(dims[j + 1 : depth])) for j in range(depth)], np.int64)
    b = Emitter(model, node)
    index = b.from_the_end(b.op("Cast", [indices], to=ir.DataType.INT64), dims[:depth])
    row = b.op("ReduceSum", [b.op("Mul", [index, b.const(strides)]), b.ints([-1])], keepdims=0)
    row = b.op("Reshape", [row, b.ints([count, 1])])
    row = b.op("Expand", [row, b.ints([count, row_size])])
    scattered = b.op(
        "ScatterElements",
        [
            b.op("Reshape", [data, b.ints([rows, row_size])]),
            row,
            b.op("Reshape", [updates, b.ints([count, row_size])]),
        ],
        axis=0,
        reduction=_reduction(node),
    )
    b.replace([b.op("Reshape", [scattered, b.ints(dims)])])
    return None


def scatter_nd_reduction_as_rows(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ScatterND with a reduction, the finding's included."""
    nodes = [n for n, _ in walk(model.graph) if _reducing_scatter(n, "ScatterND")]
    if not nodes:
        return "no ScatterND with a reduction"
    return next((problem for problem in (_as_rows(model, n) for n in nodes) if problem), None)


RULES = [
    Rule(
        "scatter-elements-reduction",
        ("unsupported-op", "conversion-error", "divergence"),
        scatter_reduction_as_onehot,
        "ScatterElements with reduction add/mul/max/min as Equal one-hot, Where and a Reduce over the axis "
        "(onnx2tf supports only reduction='none')",
        ops=("ScatterElements",),
    ),
    Rule(
        "scatter-nd-reduction",
        ("conversion-error", "divergence"),
        scatter_nd_reduction_as_rows,
        "ScatterND with a reduction (onnx2tf ignores it) as a ScatterElements over the rows of data as "
        "a matrix, with the same reduction",
        ops=("ScatterND",),
    ),
]
