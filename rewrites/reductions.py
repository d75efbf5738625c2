"""Reduce* ops whose axes arrive at run time, rebuilt from reductions over one constant axis each.

Since opset 18 (ReduceSum: 13) the axes are an input. onnx2tf takes `len()` of that input and fails
when it is not a constant (`Keras symbolic inputs/outputs do not implement __len__`). The rewrite keeps
the axes a run-time input and works for any value of them: for each dim d of the (static-shape) data
it reduces over the constant axis d and keeps that result or the tensor as it was, chosen with Where on
a run-time mask "d is among the axes", the reduced value broadcast back. Every value keeps a static
shape (onnx2tf tells layouts apart by comparing shapes); one final Slice, whose ends depend on the
axes, takes the first element along each reduced dim, and for keepdims=0 a Reshape drops them (the
kept dims found by sorting the dim indices with the reduced ones last). Composite reductions come
from Sum/Max/Min/Prod (L2 as Sqrt of a sum of squares, LogSumExp with the max subtracted): exact up to
the order of float additions. Empty data gives the empty-set value in the shape the axes give; axes
known to be empty become the constant "every dim" (or, with noop_with_empty_axes, no reduction).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, computed_at_run_time, find_node
from convfix.rules import Rule, RuleContext

# The op, the elementwise step before the base reduction, the base, and the step after.
_FORMS: dict[str, tuple[str | None, str, str | None]] = {
    "ReduceSum": (None, "ReduceSum", None),
    "ReduceSumSquare": ("Square", "ReduceSum", None),
    "ReduceL1": ("Abs", "ReduceSum", None),
    "ReduceL2": ("Square", "ReduceSum", "Sqrt"),
    "ReduceLogSum": (None, "ReduceSum", "Log"),
    "ReduceMax": (None, "ReduceMax", None),
    "ReduceMin": (None, "ReduceMin", None),
    "ReduceProd": (None, "ReduceProd", None),
    "ReduceMean": (None, "ReduceSum", None),
    "ReduceLogSumExp": (None, "ReduceSum", None),
}
OPS = tuple(_FORMS)


def axes_at_run_time(node: ir.Node) -> bool:
    """A Reduce node whose axes input exists and is not a constant."""
    if node.domain not in ("", "ai.onnx") or node.op_type not in _FORMS or len(node.inputs) < 2:
        return False
    axes = node.inputs[1]
    return axes is not None and computed_at_run_time(axes)


def _reduced_dims(b: Emitter, axes: ir.Value, rank: int) -> ir.Value:
    """A bool [rank] vector: is dim d among the (possibly negative) axes."""
    column = b.op("Unsqueeze", [b.from_the_end(axes, rank), b.const(np.array([1], np.int64))])
    hits = b.op("Equal", [column, b.const(np.arange(rank, dtype=np.int64))])
    counts = b.with_axes("ReduceMax", b.op("Cast", [hits], to=ir.DataType.FLOAT), [0], keepdims=1)
    return b.op(
        "Greater",
        [b.op("Squeeze", [counts, b.const(np.array([0], np.int64))]), b.const(np.array(0.5, np.float32))],
    )


def _masked_reduce(b: Emitter, base: str, x: ir.Value, mask: ir.Value, rank: int) -> ir.Value:
    """base over the dims the mask selects, the result broadcast back to x's (static) shape.

    Every value keeps a static shape, so onnx2tf can still tell its layouts apart; only the final
    Slice (`_keep_first`) has a shape that depends on the axes."""
    y = x
    for d in range(rank):
        chosen = b.op("Gather", [mask, b.const(np.array(d, np.int64))])
        y = b.op("Where", [chosen, b.with_axes(base, y, [d], keepdims=1), y])
    return y


def _keep_first(b: Emitter, y: ir.Value, mask: ir.Value, dims: list[int]) -> ir.Value:
    """keepdims=1: the first element along every reduced dim (they all hold the reduced value)."""
    ends = b.op("Where", [mask, b.const(np.ones(len(dims), np.int64)), b.const(np.array(dims, np.int64))])
    starts, axes = b.const(np.zeros(len(dims), np.int64)), b.const(np.arange(len(dims), dtype=np.int64))
    return b.op("Slice", [y, starts, ends, axes])


def _count(b: Emitter, mask: ir.Value, dims: list[int], dtype: ir.DataType) -> ir.Value:
    """How many elements each reduced value summarizes (for the mean)."""
    sizes = b.op("Where", [mask, b.const(np.array(dims, np.int64)), b.const(np.ones(len(dims), np.int64))])
    return b.op("Cast", [b.with_axes("ReduceProd", sizes, [0], keepdims=1)], to=dtype)


def _drop_reduced(b: Emitter, y: ir.Value, mask: ir.Value, dims: list[int], kept: int) -> ir.Value:
    """keepdims=0: reshape to the dims not reduced, in order (reduced ones sorted to the end)."""
    rank = len(dims)
    as_int = b.op("Cast", [mask], to=ir.DataType.INT64)
    keys = b.op(
        "Add",
        [b.const(np.arange(rank, dtype=np.int64)), b.op("Mul", [as_int, b.const(np.array(rank, np.int64))])],
    )
    keys = b.op("Cast", [keys], to=ir.DataType.FLOAT)
    _, order = b.tape.op_multi_out(
        "TopK",
        [keys, b.const(np.array([rank], np.int64))],
        {"largest": 0, "sorted": 1},
        num_outputs=2,
        name=f"{b.node.name}_TopK",
    )
    first = b.op("Slice", [order, b.const(np.array([0], np.int64)), b.const(np.array([kept], np.int64))])
    shape = b.op("Gather", [b.const(np.array(dims, np.int64)), first])
    attributes = {"allowzero": 1} if b.opset >= 14 else {}
    return b.op("Reshape", [y, shape], **attributes)


def _elementwise(b: Emitter, step: str | None, x: ir.Value) -> ir.Value:
    if step is None:
        return x
    if step == "Square":
        return b.op("Mul", [x, x])
    return b.op(step, [x])


def _reduce_values(b: Emitter, node: ir.Node, mask: ir.Value, dims: list[int]) -> ir.Value:
    """The reduced values, broadcast back to the data's shape."""
    data, rank = node.inputs[0], len(dims)
    pre, base, post = _FORMS[node.op_type]
    if node.op_type == "ReduceLogSumExp":
        peak = _masked_reduce(b, "ReduceMax", data, mask, rank)
        total = _masked_reduce(b, "ReduceSum", b.op("Exp", [b.op("Sub", [data, peak])]), mask, rank)
        return b.op("Add", [b.op("Log", [total]), peak])
    y = _elementwise(b, post, _masked_reduce(b, base, _elementwise(b, pre, data), mask, rank))
    if node.op_type == "ReduceMean":
        y = b.op("Div", [y, _count(b, mask, dims, data.dtype)])
    return y


# What each op gives over an empty set of elements.
_EMPTY = {"ReduceProd": 1.0, "ReduceMax": -np.inf, "ReduceMin": np.inf, "ReduceLogSum": -np.inf}
_EMPTY |= {"ReduceLogSumExp": -np.inf, "ReduceMean": np.nan}


def _over_empty_data(b: Emitter, node: ir.Node, mask: ir.Value, dims: list[int]) -> ir.Value:
    """Data with a zero dim: the output holds the empty-set value, in the shape the axes give."""
    dtype = node.inputs[0].dtype.numpy()
    fill = b.const(np.full([1] * len(dims), _EMPTY.get(node.op_type, 0.0), dtype))
    shape = b.op("Where", [mask, b.const(np.ones(len(dims), np.int64)), b.const(np.array(dims, np.int64))])
    return b.op("Expand", [fill, shape])


def _decompose(b: Emitter, node: ir.Node, dims: list[int], count: int) -> ir.Value:
    data, axes = node.inputs[0], node.inputs[1]
    mask = _reduced_dims(b, axes, len(dims))
    if 0 in dims:
        y = _over_empty_data(b, node, mask, dims)
    elif data.dtype == ir.DataType.BOOL:  # ReduceMax/Min: any/all, over 0/1 integers
        as_int = b.op("Cast", [data], to=ir.DataType.INT32)
        y = _masked_reduce(b, node.op_type, as_int, mask, len(dims))
        y = b.op("Cast", [_keep_first(b, y, mask, dims)], to=ir.DataType.BOOL)
    else:
        y = _keep_first(b, _reduce_values(b, node, mask, dims), mask, dims)
    keepdims = node.attributes.get_int("keepdims", 1)
    return y if keepdims else _drop_reduced(b, y, mask, dims, len(dims) - count)


def _every_dim(b: Emitter, node: ir.Node, rank: int) -> None:
    """Axes known to be empty mean every dim (unless noop_with_empty_axes): that constant is what
    the converter needs."""
    node.replace_input_with(1, b.const(np.arange(rank, dtype=np.int64)))
    node.graph.insert_before(node, b.tape.nodes)


def reduce_runtime_axes(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or not axes_at_run_time(node):
        return "not a Reduce op with run-time axes"
    data, axes = node.inputs[0], node.inputs[1]
    if axes.shape is None or not isinstance(axes.shape[0], int):
        return "the number of axes is unknown"
    if data.shape is None or not data.shape.is_static():
        return "the data's shape is not static (the rewrite keeps every value but the output static)"
    if data.dtype == ir.DataType.BOOL and node.op_type not in ("ReduceMax", "ReduceMin"):
        return f"bool data in {node.op_type}"
    dims, count = list(data.shape.numpy()), axes.shape[0]
    b = Emitter(model, node)
    if count == 0 and not node.attributes.get_int("noop_with_empty_axes", 0):
        _every_dim(b, node, len(dims))
        return None
    if count == 0:  # no reduction at all: each element is its own set, the elementwise steps alone
        pre, _, post = _FORMS[node.op_type]
        b.replace([_elementwise(b, post, _elementwise(b, pre, data))])
        return None
    b.replace([_decompose(b, node, dims, count)])
    return None


def _constant_axes(node: ir.Node, rank: int) -> list[int] | None:
    """The node's axes made non-negative, from the attribute or a constant input; None if computed."""
    if "axes" in node.attributes:
        given = list(node.attributes.get_ints("axes", []))
    elif len(node.inputs) > 1 and node.inputs[1] is not None:
        tensor = ir.convenience.get_const_tensor(node.inputs[1])
        if tensor is None:
            return None
        given = [int(a) for a in tensor.numpy().reshape(-1)]
    else:
        given = []
    return sorted({a + rank if a < 0 else a for a in given} or set(range(rank)))


def reduce_as_einsum(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """ReduceSum/ReduceMean over constant axes of a tensor with dynamic dims as an Einsum.

    onnx2tf moves the axes of a rank-3+ intermediate as if it held it channels-last, which it cannot
    check when dims are dynamic (seen: a sum over the sequence taken over the features instead).
    Einsum's equation names every dim, and onnx2tf hands it to TF as written. A mean divides by the
    (static) count of the reduced elements. Exact up to the order of the additions.
    """
    node = find_node(model, finding)
    if node is None or node.op_type not in ("ReduceSum", "ReduceMean") or node.domain not in ("", "ai.onnx"):
        return "not a ReduceSum or ReduceMean node"
    x = node.inputs[0]
    if x.shape is None or len(x.shape) > 26 or x.dtype is None:
        return "the input's rank or dtype is unknown"
    axes = _constant_axes(node, len(x.shape))
    if axes is None:
        return "the axes are computed (reduce-runtime-axes takes those)"
    if node.op_type == "ReduceMean" and not all(isinstance(x.shape[a], int) for a in axes):
        return "a mean over a dynamic dim: its count is not a constant"
    letters = "abcdefghijklmnopqrstuvwxyz"[: len(x.shape)]
    kept = "".join(c for i, c in enumerate(letters) if i not in axes)
    b = Emitter(model, node)
    y = b.op("Einsum", [x], equation=f"{letters}->{kept}")
    if node.op_type == "ReduceMean":
        count = int(np.prod([x.shape[a] for a in axes]))
        y = b.op("Div", [y, b.const(np.array(count, x.dtype.numpy()))])
    if node.attributes.get_int("keepdims", 1):
        y = b.with_axes("Unsqueeze", y, axes)
    b.replace([y])
    return None


RULES = [
    Rule(
        "reduce-as-einsum",
        ("conversion-error", "divergence"),
        reduce_as_einsum,
        "ReduceSum/ReduceMean over constant axes as an Einsum (onnx2tf moves the axes of dynamic tensors)",
        ops=("ReduceSum", "ReduceMean"),
    ),
    Rule(
        "reduce-runtime-axes",
        ("unsupported-op", "conversion-error", "divergence"),
        reduce_runtime_axes,
        "Reduce* with run-time axes as one-axis reductions selected per dim by Slice (axes stay an input)",
        ops=OPS,
    ),
]
