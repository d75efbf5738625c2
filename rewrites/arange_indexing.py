"""Advanced indexing by broadcast aranges as the broadcast view of the data it is.

`x[arange(B)[:, None, None, None], arange(S)[None, None, None, :]]` (how transformers 5 builds its
padding masks, `padding_mask[batch_idx, kv_idx]`) exports as a GatherND whose indices are a Concat of
Unsqueezed, Expanded Ranges: index tensors of rank 5 that onnx2tf lays out as images, transposing some
components and not others ("ConcatOp : Dimension 2 in both shapes must be equal"). Each component i is
`arange(n_i)` placed on one output axis a_i, so the result is the data's first n_i along dim i (a Slice,
left out where n_i is provably the whole dim) moved to a_i, ones elsewhere, expanded to the index
shape: a Transpose, a Reshape and an Expand. Exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, constant_input_ints, standard_node
from convfix.rules import Rule, RuleContext

INT64 = ir.DataType.INT64
_INTEGER_CASTS = frozenset({ir.DataType.INT64, ir.DataType.INT32})


def _producer(value: ir.Value | None, op_type: str) -> ir.Node | None:
    node = None if value is None else value.producer()
    return node if node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx") else None


def _constant_scalar(value: ir.Value | None) -> int | None:
    tensor = None if value is None else ir.convenience.get_const_tensor(value)
    return None if tensor is None or tensor.numpy().size != 1 else int(tensor.numpy().reshape(-1)[0])


def _unsqueeze_axes(node: ir.Node) -> list[int] | None:
    if len(node.inputs) > 1:
        return constant_input_ints(node, 1)
    axes = node.attributes.get_ints("axes")
    return None if axes is None else list(axes)


def _same_dim(a: object, b: object) -> bool:
    """Dims known equal: the same int, or the same named symbol."""
    if isinstance(a, int) or isinstance(b, int):
        return a == b
    name = getattr(a, "value", None)
    return name is not None and name == getattr(b, "value", None)


def _whole_axis(arange: ir.Node, data: ir.Value, axis: int) -> bool:
    """Whether the Range's limit is provably the data's dim `axis` (its shape, or the Shape it reads)."""
    dim = data.shape[axis]
    out = arange.outputs[0].shape
    if out is not None and len(out) == 1 and _same_dim(out[0], dim):
        return True
    limit = arange.inputs[1]
    while (producer := None if limit is None else limit.producer()) is not None and producer.op_type in (
        "Squeeze",
        "ReduceMax",
        "Cast",
        "Reshape",
    ):
        limit = producer.inputs[0]
    shape = _producer(limit, "Shape")
    if shape is None or shape.inputs[0] is None or shape.inputs[0].shape is None:
        return False
    source = shape.inputs[0]
    rank = len(source.shape)
    # normalize.py wrote the bounds out, from the start and within the rank; any other form reads as
    # not provable here (the Slice then keeps the rewrite exact)
    start, end = shape.attributes.get_int("start", 0), shape.attributes.get_int("end", rank)
    if end != start + 1 or not 0 <= start < rank:
        return False
    return (source is data and start == axis) or _same_dim(source.shape[start], dim)


@dataclass(frozen=True)
class Arange:
    """One index component: arange(limit) on index axis `position`; `whole` if limit is the data's dim."""

    position: int
    limit: ir.Value
    whole: bool


def _arange_component(component: ir.Value, data: ir.Value, axis: int, rank: int) -> Arange | None:
    """The arange `component` (rank+1 dims, the last 1) holds along one index axis, or None."""
    last = _producer(component, "Unsqueeze")
    if last is None or _unsqueeze_axes(last) not in ([-1], [rank]):
        return None
    value = last.inputs[0]
    while _producer(value, "Expand") is not None:
        value = value.producer().inputs[0]
    inserted: list[list[int]] = []
    while (unsqueeze := _producer(value, "Unsqueeze")) is not None:
        axes = _unsqueeze_axes(unsqueeze)
        if axes is None:
            return None
        inserted.append(axes)
        value = unsqueeze.inputs[0]
    while (cast := _producer(value, "Cast")) is not None and ir.DataType(
        cast.attributes.get_int("to", 0)
    ) in _INTEGER_CASTS:
        value = cast.inputs[0]
    arange = _producer(value, "Range")
    if arange is None or _constant_scalar(arange.inputs[0]) != 0 or _constant_scalar(arange.inputs[2]) != 1:
        return None
    position, current = 0, 1
    for axes in reversed(inserted):
        current += len(axes)
        named = {a + current if a < 0 else a for a in axes}
        position = [p for p in range(current) if p not in named][position]
    if current != rank:
        return None
    return Arange(position, arange.inputs[1], _whole_axis(arange, data, axis))


def arange_grid(node: ir.Node) -> list[Arange] | None:
    """For a GatherND indexing its data by broadcast aranges, the arange each leading data dim meets."""
    if node.op_type != "GatherND" or node.attributes.get_int("batch_dims", 0) != 0:
        return None
    data, indices = node.inputs[0], node.inputs[1]
    concat = _producer(indices, "Concat")
    if data is None or data.shape is None or concat is None or indices.shape is None:
        return None
    rank = len(indices.shape) - 1
    if concat.attributes.get_int("axis", 0) not in (-1, rank):
        return None
    if not 0 < len(concat.inputs) <= len(data.shape):
        return None
    grid = [_arange_component(part, data, i, rank) for i, part in enumerate(concat.inputs)]
    if any(a is None for a in grid) or len({a.position for a in grid}) != len(grid):
        return None
    return grid


def arange_indexing_as_view(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "GatherND")
    grid = None if node is None else arange_grid(node)
    if grid is None:
        return "not a GatherND indexing by broadcast aranges"
    data, indices = node.inputs[0], node.inputs[1]
    count, rank, data_rank = len(grid), len(indices.shape) - 1, len(data.shape)
    b = Emitter(model, node)
    view = data
    for axis, arange in enumerate(grid):
        if not arange.whole:  # arange(n) takes the first n of the dim
            end = b.op("Reshape", [b.op("Cast", [arange.limit], to=INT64.value), b.ints([1])])
            view = b.op("Slice", [view, b.ints([0]), end, b.ints([axis])])
    positions = [a.position for a in grid]
    order = sorted(range(count), key=lambda i: positions[i])
    if order != list(range(count)):
        view = b.op("Transpose", [view], perm=[*order, *range(count, data_rank)])
    if rank > count:
        # ones where no arange lies: a Reshape to dims gathered from [1, *shape], not an Unsqueeze,
        # which onnx2tf turns into a reshape with several -1 when the dims are unknown
        where = sorted(positions)
        picks = [1 + where.index(p) if p in positions else 0 for p in range(rank)]
        picks += list(range(1 + count, 1 + data_rank))
        dims = b.op("Concat", [b.ints([1]), b.op("Shape", [view])], axis=0)
        view = b.op("Reshape", [view, b.op("Gather", [dims, b.ints(picks)], axis=0)])
    shape = b.op("Slice", [b.op("Shape", [indices]), b.ints([0]), b.ints([rank])])
    if data_rank > count:
        rest = b.op("Slice", [b.op("Shape", [data]), b.ints([count]), b.ints([data_rank])])
        shape = b.op("Concat", [shape, rest], axis=0)
    b.replace([b.op("Expand", [view, shape])])
    return None


RULES = [
    Rule(
        "arange-indexing-as-view",
        ("divergence", "conversion-error"),
        arange_indexing_as_view,
        "GatherND by broadcast aranges (x[arange(B)[:, None], arange(S)]) as a Transpose, Reshape and "
        "Expand of the data",
        ops=("GatherND",),
    ),
]
