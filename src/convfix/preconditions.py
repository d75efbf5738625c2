"""What the model asks of its integer inputs, where the graph says it: the ranges probes draw from.

A generated probe that breaks a model's precondition tests nothing and can kill a runtime: an integer
Div by zero ends onnxruntime with SIGFPE, an index past its axis is an error, a shape input of random
values can ask ConstantOfShape for gigabytes. Each constraint is found at the node that imposes it and
carried back to the graph input it comes from through ops that pass values on unchanged (Cast between
integer types, reshaping, slicing, gathering, concatenating). Where arithmetic intervenes the
precondition is not knowable here, and the input keeps the default range. The user's `--inputs` are
never altered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import onnx_ir as ir

# Values a shape-like input (ConstantOfShape's shape, Tile's repeats) may take, at most.
SHAPE_VALUE_CAP = 4

Dim = int | str | None


@dataclass(frozen=True)
class Constraint:
    """What one integer input may hold. `indexes`: the dims its values index into (the smallest
    bounds them, negative indices included); `positive`: at least 1 (sizes, counts); `small`: a
    shape-like value; `nonzero`: a divisor or a step."""

    indexes: tuple[Dim, ...] = ()
    positive: bool = False
    small: bool = False
    nonzero: bool = False
    ones: bool = False  # broadcasting target shapes: 1 broadcasts with anything

    def merged(self, other: Constraint) -> Constraint:
        return Constraint(
            self.indexes + other.indexes,
            self.positive or other.positive,
            self.small or other.small,
            self.nonzero or other.nonzero,
            self.ones or other.ones,
        )


_PASS_THROUGH = frozenset(
    {
        "Identity",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Expand",
        "Tile",
        "Slice",
        "Gather",
    }
)
_NONZERO = Constraint(nonzero=True)


def _integer(value: ir.Value | None) -> bool:
    return value is not None and value.dtype is not None and value.dtype.is_integer()


def _dim(value: ir.Value | None, axis: int) -> Dim:
    if value is None or value.shape is None or not -len(value.shape) <= axis < len(value.shape):
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else (dim.value or None)


def _axis(node: ir.Node, default: int = 0) -> int:
    attribute = node.attributes.get("axis")
    return attribute.as_int() if attribute is not None else default


def _sites(node: ir.Node) -> Iterator[tuple[ir.Value | None, Constraint]]:
    """The constraints this node puts on its inputs."""
    op = node.op_type
    inputs = list(node.inputs) + [None] * 4
    if op in ("Div", "Mod") and _integer(inputs[1]):
        yield inputs[1], _NONZERO
    elif op in ("Gather", "GatherElements") or op == "ScatterElements":
        yield inputs[1], Constraint(indexes=(_dim(inputs[0], _axis(node)),))
    elif op in ("GatherND", "ScatterND") and inputs[0] is not None and inputs[0].shape is not None:
        yield inputs[1], Constraint(indexes=tuple(_dim(inputs[0], a) for a in range(len(inputs[0].shape))))
    elif op in ("ConstantOfShape", "OneHot"):
        yield inputs[0 if op == "ConstantOfShape" else 1], Constraint(positive=True, small=True)
    elif op == "Tile":
        yield inputs[1], Constraint(positive=True, small=True)
    elif op == "Expand":
        yield inputs[1], Constraint(ones=True)
    elif op == "Range":
        yield inputs[2], _NONZERO
    elif op == "Slice":
        yield inputs[4], _NONZERO
    elif op == "TopK":
        yield inputs[1], Constraint(indexes=(_dim(inputs[0], _axis(node, -1)),), positive=True)
    elif op == "Resize":
        yield inputs[3], Constraint(positive=True, small=True)


def _sources(value: ir.Value) -> Iterator[ir.Value]:
    """The graph inputs `value` carries unchanged (through integer Casts and reshaping ops)."""
    seen: set[int] = set()
    pending = [value]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        producer = current.producer()
        if producer is None:
            if current.is_graph_input():
                yield current
            continue
        op = producer.op_type
        if producer.domain not in ("", "ai.onnx"):
            continue
        if op in _PASS_THROUGH or (op == "Cast" and _integer(current)):
            if producer.inputs and producer.inputs[0] is not None:
                pending.append(producer.inputs[0])
        elif op == "Concat":
            pending.extend(v for v in producer.inputs if v is not None)


def constraints(model: ir.Model) -> dict[str, Constraint]:
    """Per integer graph input, what the model asks of its values (main graph and subgraphs)."""
    found: dict[str, Constraint] = {}
    for node in model.graph.all_nodes():
        if node.domain not in ("", "ai.onnx"):
            continue
        for value, constraint in _sites(node):
            if value is None or not _integer(value):
                continue
            for source in _sources(value):
                if not _integer(source):
                    continue
                known = found.get(source.name)
                found[source.name] = constraint if known is None else known.merged(constraint)
    return found


def value_range(constraint: Constraint, size_of: Callable[[Dim], int]) -> tuple[int, int, bool]:
    """[low, high) and whether 0 is excluded, for an input under `constraint`; `size_of` resolves
    a dim (a size, a symbol's probe size, or None: unknown) to a size."""
    low, high = 0, 10
    if constraint.indexes:
        bound = min(max(1, size_of(d)) for d in constraint.indexes)
        low, high = -bound, bound
    if constraint.positive:
        low = max(low, 1)
        high = max(high, low + 1)
    if constraint.small:
        high = min(high, SHAPE_VALUE_CAP + 1)
    if constraint.ones:
        low, high = 1, 2
    return low, high, constraint.nonzero
