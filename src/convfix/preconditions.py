"""What the model asks of its inputs, where the graph says it: the values generated probes draw.

A generated probe that breaks a model's precondition tests nothing and can kill a runtime: an integer
Div by zero ends onnxruntime with SIGFPE, an index past its axis or an axis past the rank is an error,
a shape input of random values can ask ConstantOfShape for gigabytes. Each constraint is found at the
node that imposes it and carried back to the graph input it comes from through ops that pass values
on unchanged (Cast between integer types, reshaping, slicing, gathering, concatenating). Where
arithmetic intervenes the precondition is not knowable here, and the input keeps the default values.
The user's `--inputs` are never altered.

Two kinds: element-wise ones (a range, no zero) merge; structured ones describe the whole tensor (a
list of distinct axes, a Reshape target, sizes that add up to a dim, Resize scales) and win.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix.findings import ATEN_DOMAIN, node_op

# Values a shape-like input (ConstantOfShape's shape, Tile's repeats) may take, at most.
SHAPE_VALUE_CAP = 4
DEFAULT_LOW, DEFAULT_HIGH = 0, 10  # integer probes otherwise: [0, 10)

Dim = int | str | None
SizeOf = Callable[[Dim], int]


@dataclass(frozen=True)
class Constraint:
    """What one input may hold.

    Element-wise: `indexes` the dims its values index into (the smallest bounds them, negative
    indices included, unless `labels`: class labels, never negative); `positive` at least 1 (sizes,
    counts, or a positive float); `small` a shape-like value; `nonzero` a divisor or a step; `ones` a
    broadcasting target.
    Structured: `axes_rank` distinct axes of a tensor of that rank (`axes_dims`, if given, the only
    axes allowed: Squeeze's size-1 dims); `reshape` a Reshape target (ones and one -1: any data
    fits); `parts_of` sizes adding up to that dim; `scales` Resize scales (1 on the two leading dims);
    `ascending` sorted along the last axis (what searchsorted searches).
    """

    indexes: tuple[Dim, ...] = ()
    positive: bool = False
    small: bool = False
    nonzero: bool = False
    ones: bool = False
    labels: bool = False
    axes_rank: int | None = None
    axes_dims: tuple[int, ...] | None = None
    reshape: bool = False
    parts_of: Dim | bool = False
    scales: bool = False
    ascending: bool = False

    @property
    def structured(self) -> bool:
        return (
            self.axes_rank is not None
            or self.reshape
            or self.parts_of is not False
            or self.scales
            or self.ascending
        )

    def merged(self, other: Constraint) -> Constraint:
        if other.structured:
            return other
        if self.structured:
            return self
        return Constraint(
            self.indexes + other.indexes,
            self.positive or other.positive,
            self.small or other.small,
            self.nonzero or other.nonzero,
            self.ones or other.ones,
            self.labels or other.labels,
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
_SMALL_SIZE = Constraint(positive=True, small=True)
_REDUCTIONS = frozenset(
    {
        "ReduceSum",
        "ReduceMean",
        "ReduceMax",
        "ReduceMin",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "ReduceSumSquare",
    }
)


def _integer(value: ir.Value | None) -> bool:
    return value is not None and value.dtype is not None and value.dtype.is_integer()


def _rank(value: ir.Value | None) -> int | None:
    return None if value is None or value.shape is None else len(value.shape)


def _dim(value: ir.Value | None, axis: int) -> Dim:
    if value is None or value.shape is None or not -len(value.shape) <= axis < len(value.shape):
        return None
    dim = value.shape[axis]
    return dim if isinstance(dim, int) else (dim.value or None)


def _axis(node: ir.Node, default: int = 0) -> int:
    attribute = node.attributes.get("axis")
    return attribute.as_int() if attribute is not None else default


def _axes_of(value: ir.Value | None, extra: int = 0) -> Constraint | None:
    rank = _rank(value)
    return None if rank is None else Constraint(axes_rank=rank + extra)


def _sites(node: ir.Node) -> Iterator[tuple[ir.Value | None, Constraint | None]]:
    """The constraints this node puts on its inputs."""
    op = node.op_type
    inputs = list(node.inputs) + [None] * 5
    if op in ("Div", "Mod") and _integer(inputs[1]):
        yield inputs[1], _NONZERO
    elif op in ("Gather", "GatherElements", "ScatterElements", "Scatter"):
        yield inputs[1], Constraint(indexes=(_dim(inputs[0], _axis(node)),))
    elif op in ("GatherND", "ScatterND") and _rank(inputs[0]) is not None:
        yield inputs[1], Constraint(indexes=tuple(_dim(inputs[0], a) for a in range(_rank(inputs[0]))))
    elif op in ("SoftmaxCrossEntropyLoss", "NegativeLogLikelihoodLoss"):  # class labels: no negatives
        yield inputs[1], Constraint(indexes=(_dim(inputs[0], 1),), labels=True)
    elif op in ("ConstantOfShape", "Tile", "OneHot"):
        yield inputs[0 if op == "ConstantOfShape" else 1], _SMALL_SIZE
    elif op == "Expand":
        yield inputs[1], Constraint(ones=True)
    elif op == "Reshape":
        yield inputs[1], Constraint(reshape=True)
    elif op == "Range":
        yield inputs[2], _NONZERO
    elif op == "Slice":
        yield inputs[3], _axes_of(inputs[0])
        yield inputs[4], _NONZERO
    elif op == "TopK":
        yield inputs[1], Constraint(indexes=(_dim(inputs[0], _axis(node, -1)),), positive=True)
    elif op in ("Resize", "Upsample"):
        yield inputs[2 if op == "Resize" else 1], Constraint(scales=True)
        yield inputs[3], _SMALL_SIZE
    elif op in _REDUCTIONS or op in ("CumSum", "Pad"):
        yield inputs[3 if op == "Pad" else 1], _axes_of(inputs[0])
    elif op == "Unsqueeze":
        length = inputs[1].shape[0] if _rank(inputs[1]) == 1 else None
        yield inputs[1], _axes_of(inputs[0], length) if isinstance(length, int) else None
    elif op == "Squeeze" and inputs[0] is not None and inputs[0].shape is not None:
        ones = tuple(i for i, d in enumerate(inputs[0].shape) if d == 1)
        yield inputs[1], Constraint(axes_rank=len(inputs[0].shape), axes_dims=ones)
    elif op in ("Split", "SplitToSequence"):
        yield inputs[1], Constraint(parts_of=_dim(inputs[0], _axis(node)) or True)


def _graph_inputs_upstream(
    value: ir.Value, follow: Callable[[ir.Node, ir.Value], Iterable[ir.Value | None]], limit: int
) -> Iterator[ir.Value]:
    """The graph inputs reached from `value` going up through `follow(producer, value)` (at most `limit`
    values visited)."""
    seen: set[int] = set()
    pending = [value]
    while pending and len(seen) < limit:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        producer = current.producer()
        if producer is None:
            if current.is_graph_input():
                yield current
        else:
            pending.extend(v for v in follow(producer, current) if v is not None)


def _carried_unchanged(producer: ir.Node, value: ir.Value) -> Iterable[ir.Value | None]:
    """The inputs a producer passes on unchanged: integer Casts, reshaping ops, Concat's parts."""
    if producer.domain not in ("", "ai.onnx"):
        return ()
    op = producer.op_type
    if op in _PASS_THROUGH or (op == "Cast" and _integer(value)):
        return producer.inputs[:1]
    return producer.inputs if op == "Concat" else ()


def _sources(value: ir.Value) -> Iterator[ir.Value]:
    """The graph inputs `value` carries unchanged (through integer Casts and reshaping ops)."""
    return _graph_inputs_upstream(value, _carried_unchanged, limit=1 << 16)


# Inputs of onnxruntime's attention ops that say which keys are real: a key padding mask, sequence
# lengths. Their contracts (lengths within the key length; a prompt without padding, whose padded
# rows onnxruntime leaves undefined) hold for a mask of ones, and what reaches them is usually the
# model's attention mask through arithmetic (GroupQueryAttention's seqlens_k is ReduceSum(mask) - 1),
# so every integer graph input they are computed from is drawn as ones.
_KEY_LENGTH_INPUTS = {"GroupQueryAttention": (5, 6), "MultiHeadAttention": (4,), "Attention": (3,)}
_READS_NO_VALUES = frozenset({"Shape", "Size"})


def _computed_from(value: ir.Value, limit: int = 64) -> Iterator[ir.Value]:
    """The graph inputs whose values `value` is computed from, through any op (at most `limit` nodes)."""
    return _graph_inputs_upstream(
        value, lambda producer, _: () if producer.op_type in _READS_NO_VALUES else producer.inputs, limit
    )


def _contrib_sites(node: ir.Node) -> Iterator[tuple[ir.Value, Constraint]]:
    for index in _KEY_LENGTH_INPUTS.get(node.op_type, ()):
        value = node.inputs[index] if len(node.inputs) > index else None
        if value is not None:
            for source in _computed_from(value):
                yield source, Constraint(ones=True)


def _aten_sites(node: ir.Node) -> Iterator[tuple[ir.Value | None, Constraint | None]]:
    """What an ATen fallback asks of its inputs: searchsorted searches a sorted sequence."""
    operator = node_op(node).split("::", 1)[1]
    if operator == "searchsorted" and node.inputs:
        yield node.inputs[0], Constraint(ascending=True)


def constraints(model: ir.Model) -> dict[str, Constraint]:
    """Per graph input, what the model asks of its values (main graph and subgraphs)."""
    found: dict[str, Constraint] = {}
    for node in model.graph.all_nodes():
        if node.domain == ATEN_DOMAIN:
            sites = _aten_sites(node)
        elif node.domain == "com.microsoft":
            sites = _contrib_sites(node)
        elif node.domain in ("", "ai.onnx"):
            sites = _sites(node)
        else:
            continue
        for value, constraint in sites:
            if value is None or constraint is None:
                continue
            direct = value.is_graph_input()
            for source in _sources(value):
                # A structured constraint describes the whole tensor: only when it is the input itself.
                if constraint.structured and not direct:
                    continue
                if not (_integer(source) or constraint.scales or constraint.ascending):
                    continue
                known = found.get(source.name)
                found[source.name] = constraint if known is None else known.merged(constraint)
    return found


def draw(
    constraint: Constraint, rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...], size_of: SizeOf
) -> np.ndarray | None:
    """Values for an input under `constraint`, or None where it cannot be met (defaults apply)."""
    if constraint.scales:
        return _scales(rng, dtype, shape)
    if constraint.ascending:
        values = rng.standard_normal(shape) * 3 if dtype.kind == "f" else rng.integers(-20, 20, size=shape)
        return np.sort(np.asarray(values), axis=-1).astype(dtype)
    if dtype.kind not in "iu":
        return None
    if constraint.axes_rank is not None:
        return _axes(constraint, rng, dtype, shape)
    if constraint.reshape:
        return None if len(shape) != 1 or shape[0] == 0 else np.array([1] * (shape[0] - 1) + [-1], dtype)
    if constraint.parts_of is not False:
        return _parts(constraint.parts_of, rng, dtype, shape, size_of)
    low, high, nonzero = _range(constraint, size_of)
    info = np.iinfo(dtype)
    low, high = max(low, int(info.min)), min(high, int(info.max) + 1)
    choices = [v for v in range(low, max(high, low + 1)) if not (nonzero and v == 0)] or [1]
    return np.asarray(rng.choice(np.array(choices), size=shape)).astype(dtype)


def _range(constraint: Constraint, size_of: SizeOf) -> tuple[int, int, bool]:
    low, high = DEFAULT_LOW, DEFAULT_HIGH
    if constraint.indexes:
        bound = min(max(1, size_of(d)) for d in constraint.indexes)
        low, high = (0 if constraint.labels else -bound), bound
    if constraint.positive:
        low = max(low, 1)
        high = max(high, low + 1)
    if constraint.small:
        high = min(high, SHAPE_VALUE_CAP + 1)
    if constraint.ones:
        low, high = 1, 2
    return low, high, constraint.nonzero


def _axes(
    constraint: Constraint, rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]
) -> np.ndarray | None:
    """Distinct axes, some written negative; None if there are fewer axes than asked for."""
    count = int(np.prod(shape, dtype=np.int64))
    rank = constraint.axes_rank
    allowed = list(constraint.axes_dims if constraint.axes_dims is not None else range(rank))
    if count > len(allowed) or len(shape) > 1:
        return None
    chosen = (
        rng.choice(np.array(allowed, np.int64), size=count, replace=False) if count else np.zeros(0, np.int64)
    )
    negative = rng.random(count) < 0.5
    values = np.where(negative, chosen - rank, chosen)
    if np.iinfo(dtype).min == 0:
        values = chosen
    return values.reshape(shape).astype(dtype)


def _parts(
    dim: Dim | bool, rng, dtype: np.dtype, shape: tuple[int, ...], size_of: SizeOf
) -> np.ndarray | None:
    """Positive sizes that add up to the split dim (when it is known and long enough)."""
    if len(shape) != 1 or dim is True:
        return None
    total, count = size_of(dim), shape[0]
    if count == 0 or total < count:
        return None
    cuts = np.sort(rng.choice(np.arange(1, total), size=count - 1, replace=False)) if count > 1 else []
    return np.diff(np.concatenate([[0], cuts, [total]])).astype(dtype)


def _scales(rng: np.random.Generator, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray | None:
    """Resize and Upsample scales: 1 for batch and channels, a zoom of 1.5 or 2 for the rest (Upsample
    takes no scale below 1)."""
    if dtype.kind != "f" or len(shape) != 1:
        return None
    values = rng.choice(np.array([1.5, 2.0]), size=shape)
    values[: min(2, shape[0])] = 1.0
    return values.astype(dtype)
