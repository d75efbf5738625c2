"""Unique along an axis as an unsorted Unique over rows, sorted here: the parts onnx2tf gets right.

onnx2tf sorts the unique slices along an axis only when their flattened length is static, and that
is unknown after its own UniqueWithCounts, so it silently keeps them in order of first occurrence
(node suite: [2, 4, 2] along axis 1, [3, 3] along axis -1); it also moves a rank-3 input's axes to
channels-last. ONNX sorts the slices lexicographically in C order, which is the order of the rows of
the input with the axis moved first and the other dims flattened. So: those rows, Unique(axis=0,
sorted=0) (first occurrence, as TF's UniqueWithCounts returns it), and for sorted=1 the rank of each
unique row among the others (row i precedes row j where their first differing element is smaller in
i), which reorders indices and counts and renumbers inverse_indices; Y is the input's slices at the
indices, a Gather along the axis. Exact; the dims off the axis must be static (and the slices at
most MAX_WIDTH elements for a sorted Unique).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext

INT64 = ir.DataType.INT64.value
MAX_WIDTH = 256  # elements per slice: the sort spells out one comparison per element


def _lexicographic_rank(b: Emitter, rows: ir.Value, width: int) -> ir.Value:
    """[U] int64: how many of the U distinct rows [U, width] precede each one lexicographically.

    Column by column in 2-D [U, U] comparisons (onnx2tf lays rank-3 pairs out channels-last):
    the sign of row i - row j is that of their first differing column, folded from the last."""
    decided = None
    for column in reversed(range(width)):
        values = b.op("Gather", [rows, b.ints([column])], axis=1)  # [U, 1]
        across = b.op("Transpose", [values], perm=[1, 0])  # [1, U]
        greater, less = b.op("Greater", [values, across]), b.op("Less", [values, across])
        sign = b.op("Sub", [b.op("Cast", [greater], to=INT64), b.op("Cast", [less], to=INT64)])
        if decided is not None:
            sign = b.op("Where", [b.op("Or", [greater, less]), sign, decided])
        decided = sign
    after = b.op("Cast", [b.op("Greater", [decided, b.const(np.array(0, np.int64))])], to=INT64)
    return b.with_axes("ReduceSum", after, [1], keepdims=0)


def _rows(b: Emitter, x: ir.Value, axis: int, width: int) -> ir.Value:
    """x with `axis` moved first and the rest flattened: [n, width]. A static x is gathered from its
    flattened elements by constant positions (onnx2tf cannot tell a square Transpose's dims apart:
    [3, 3] along axis -1 came back untransposed); a dynamic one is transposed."""
    perm = [axis] + [i for i in range(len(x.shape)) if i != axis]
    if not x.shape.is_static():
        return b.op("Reshape", [b.op("Transpose", [x], perm=perm), b.ints([-1, width])])
    positions = np.arange(int(np.prod(x.shape.numpy()))).reshape(x.shape.numpy()).transpose(perm)
    flat = b.op("Reshape", [x, b.ints([-1])])
    return b.op("Gather", [flat, b.const(positions.reshape(-1, width).astype(np.int64))], axis=0)


def unique_as_rows(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Unique")
    if node is None:
        return "not a Unique node"
    axis_attribute = node.attributes.get("axis")
    x = node.inputs[0]
    if axis_attribute is None:
        return "Unique without an axis works on the flattened input already"
    if x.shape is None:
        return "the input's rank is unknown"
    rank = len(x.shape)
    axis = axis_attribute.as_int()
    axis = axis + rank if axis < 0 else axis
    others = [d for i, d in enumerate(x.shape) if i != axis]
    if not all(isinstance(d, int) for d in others):
        return "the dims off the axis must be static"
    width = int(np.prod(others))
    if width > MAX_WIDTH:
        return f"slices of {width} elements (sorting compares them column by column, up to {MAX_WIDTH})"
    b = Emitter(model, node)
    rows = _rows(b, x, axis, width)
    _, indices, inverse, counts = b.tape.op_multi_out(
        "Unique", [rows], {"axis": 0, "sorted": 0}, num_outputs=4, name=f"{node.name}_Unique_rows"
    )
    if node.attributes.get_int("sorted", 1):
        rank_of = _lexicographic_rank(b, b.op("Gather", [rows, indices], axis=0), width)
        count = b.op("Reshape", [b.op("Shape", [rank_of]), b.ints([])])
        one, zero = (b.const(np.array(v, np.int64)) for v in (1, 0))
        positions = b.op("Range", [zero, count, one])
        places = b.op(
            "Equal", [b.with_axes("Unsqueeze", rank_of, [0]), b.with_axes("Unsqueeze", positions, [1])]
        )
        order = b.op("ArgMax", [b.op("Cast", [places], to=INT64)], axis=1, keepdims=0)
        indices, counts = (b.op("Gather", [v, order], axis=0) for v in (indices, counts))
        inverse = b.op("Gather", [rank_of, inverse], axis=0)
    unique = b.op("Gather", [x, indices], axis=axis)
    b.replace([unique, indices, inverse, counts][: len(node.outputs)])
    return None


RULES = [
    Rule(
        "unique-as-rows",
        ("conversion-error", "divergence"),
        unique_as_rows,
        "Unique along an axis as an unsorted Unique over rows, sorted by each row's lexicographic rank",
        ops=("Unique",),
    )
]
