"""Slice, Split and Compress forms onnx2tf mis-converts, respelled with the indexing ops it takes.

- Slice whose axes are a run-time input: onnx2tf slices the wrong dims (seen: shape (3, 10, 0) for
  (3, 10, 5)), silently. Scattered into full-rank starts, ends and steps (ScatterElements over the dims;
  the dims not named keep [0, INT64_MAX) step 1), the Slice takes the constant axes 0..r-1. Exact.
- Split into `num_outputs` parts that do not divide the dim (opset 18: the last part is smaller):
  onnx2tf asks for an even split. The sizes are written out as the `split` input. Exact.
- Pad with an axes input (opset 18): onnx2tf reshapes the pads to [2, rank] as if every dim were
  named (`Cannot reshape a tensor with 4 elements to shape [2,3]`). The pads are gathered into
  full-rank pads, zeros for the dims not named; the axes must be constants. Exact.
- Compress: onnx2tf fails on it (`'KerasTensor' object has no attribute 'ndim'`). A Gather of the
  indices NonZero finds in the condition (over the flattened data when there is no axis). Exact.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, computed_at_run_time, constant_input_ints, standard_node
from convfix.rules import Rule, RuleContext

_INT64_MAX = np.iinfo(np.int64).max


def runtime_slice_axes(node: ir.Node) -> bool:
    """A Slice (opset 10+ form) whose axes input exists and is not a constant."""
    axes = node.inputs[3] if len(node.inputs) > 3 else None
    return axes is not None and computed_at_run_time(axes)


def _full_rank(b: Emitter, axes: ir.Value, values: ir.Value | None, default: int, rank: int):
    """values scattered over the named dims of a rank-long vector of `default`."""
    base = b.const(np.full(rank, default, np.int64))
    if values is None:
        return base
    cast = b.op("Cast", [values], to=ir.DataType.INT64)
    return b.op("ScatterElements", [base, axes, cast], axis=0)


def slice_runtime_axes(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Slice")
    if node is None or not runtime_slice_axes(node):
        return "not a Slice with run-time axes"
    data, starts, ends, axes = node.inputs[:4]
    steps = node.inputs[4] if len(node.inputs) > 4 else None
    if data.shape is None:
        return "the data's rank is unknown"
    rank = len(data.shape)
    b = Emitter(model, node)
    axes = b.op("Cast", [axes], to=ir.DataType.INT64)
    axes = b.from_the_end(axes, rank)
    inputs = [
        data,
        _full_rank(b, axes, starts, 0, rank),
        _full_rank(b, axes, ends, _INT64_MAX, rank),
        b.const(np.arange(rank, dtype=np.int64)),
        _full_rank(b, axes, steps, 1, rank),
    ]
    b.replace([b.op("Slice", inputs)])
    return None


def split_uneven(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Split")
    if node is None or "num_outputs" not in node.attributes:
        return "not a Split into num_outputs parts"
    data, parts = node.inputs[0], node.attributes.get_int("num_outputs", 0)
    axis = node.attributes.get_int("axis", 0)
    if data.shape is None or not isinstance(data.shape[axis], int):
        return "the split dim is not static"
    dim = data.shape[axis]
    chunk = math.ceil(dim / parts)
    sizes = [min(chunk, dim - i * chunk) for i in range(parts)]
    if dim % parts == 0 or min(sizes) <= 0:
        return "an even split (or one the sizes cannot spell out)"
    b = Emitter(model, node)
    split = b.const(np.array(sizes, np.int64))
    node.graph.insert_before(node, b.tape.nodes)
    node.attributes.pop("num_outputs")
    node.resize_inputs(2)
    node.replace_input_with(1, split)
    return None


def pad_axes_full_rank(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Pad")
    if node is None or len(node.inputs) < 4 or node.inputs[3] is None:
        return "not a Pad with an axes input"
    data, pads, constant_value = node.inputs[:3]
    axes = constant_input_ints(node, 3)
    if axes is None or data.shape is None:
        return "the axes are computed at run time, or the data's rank is unknown"
    rank = len(data.shape)
    named = [axis + rank if axis < 0 else axis for axis in axes]
    # Position 0 of the gathered vector is a zero; position 1 + j is pads[j].
    where = [1 + named.index(dim) if dim in named else 0 for dim in range(rank)]
    index = where + [0 if w == 0 else w + len(named) for w in where]
    b = Emitter(model, node)
    padded = b.op("Concat", [b.ints([0]), b.op("Cast", [pads], to=ir.DataType.INT64)], axis=0)
    full = b.op("Gather", [padded, b.ints(index)], axis=0)
    mode = node.attributes.get_string("mode", "constant")
    if constant_value is not None and (constant_value.shape is None or len(constant_value.shape) != 0):
        # ONNX's own Attention body pads with a [1] value, which TF's PadV2 refuses; it is one element
        constant_value = b.op("Reshape", [constant_value, b.ints([])])
    b.replace([b.op("Pad", [data, full, constant_value], mode=mode)])
    return None


def compress_as_gather(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Compress")
    if node is None:
        return "not a Compress node"
    data, condition = node.inputs
    b = Emitter(model, node)
    flat = b.const(np.array([-1], np.int64))
    indices = b.op("Reshape", [b.op("NonZero", [condition]), flat])
    if "axis" in node.attributes:
        result = b.op("Gather", [data, indices], axis=node.attributes.get_int("axis", 0))
    else:
        result = b.op("Gather", [b.op("Reshape", [data, flat]), indices], axis=0)
    b.replace([result])
    return None


_KINDS = ("conversion-error", "divergence")
RULES = [
    Rule(
        "slice-runtime-axes",
        _KINDS,
        slice_runtime_axes,
        "Slice with run-time axes as a Slice over every dim (starts/ends/steps scattered into place)",
        ops=("Slice",),
    ),
    Rule(
        "split-uneven",
        _KINDS,
        split_uneven,
        "Split into num_outputs parts that do not divide the dim, with the sizes written out",
        ops=("Split",),
    ),
    Rule(
        "pad-axes-full-rank",
        _KINDS,
        pad_axes_full_rank,
        "Pad with constant axes as a Pad over every dim (pads gathered into place, zeros elsewhere)",
        ops=("Pad",),
    ),
    Rule(
        "compress-as-gather",
        _KINDS,
        compress_as_gather,
        "Compress as a Gather of the indices NonZero finds in the condition",
        ops=("Compress",),
    ),
]
