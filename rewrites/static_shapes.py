"""Expand of a tensor with a static shape to a partly run-time shape, as Gathers along the run-time dims.

Seen on dynamic ViT (both exporters): the cls token [1, 1, 16] is expanded to Concat(Shape(x)[0], 1, 1).
onnx2tf 1.29 expands by multiplying with `tf.ones(shape)`, whose static shape is (None, None, None)
when the shape is a tensor; it then judges the result (and the Concat after it) transposed because
its TF shape differs from ONNX's [batch, 1, 16], and the Add of the [1, 5, 16] position embedding
transposes the constant to [1, 16, 5] and fails. Gathering index 0 `d` times along a dim of length 1
repeats it `d` times, which is what Expand does there, and TF's gather keeps every other dim static:
(None, 1, 16). Dims whose target is a constant go to a final Expand by a constant shape, which TF
knows statically. Exact: a run-time target dim of a data dim n > 1 must be 1 or n, so that dim stays
n. The finding is a conversion error downstream of the Expand, so every such Expand is rewritten.

TorchScript spells the same shapes at run time: the patches are flattened by Reshape(conv,
Concat(Shape(conv)[0:2], -1)), attention heads split by Reshape(h, Concat(batch, 5, 2, 8)), the
token expanded to Where(Equal(t, -1), 1, t). A computed Reshape target leaves TF no static dims
either (whisper_encoder's Add then failed, 8 against 16). Both rules read a shape tensor element by
element through Shape, Concat, Slice, Gather, Unsqueeze and that Where: constants, dims of a tensor,
or unknown. A Reshape target whose dims are the data's own at the same position (the same dim, or
one ONNX symbol such as "batch") becomes 0, "keep this dim", and a single remaining unknown -1: a
constant target, exact for every input the original accepts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import Emitter, constant_input_ints
from convfix.rules import Rule, RuleContext


@dataclass(frozen=True)
class _Dim:
    """An element of a shape tensor that is dim `axis` of `value` at run time (so never negative)."""

    value: ir.Value
    axis: int

    def same_as(self, value: ir.Value, axis: int) -> bool:
        """Whether it is dim `axis` of `value`: the same dim, or dims ONNX names by one symbol."""
        if self.value is value and self.axis == axis:
            return True
        mine, theirs = self.value.shape[self.axis], value.shape[axis]
        return isinstance(mine, ir.SymbolicDim) and mine.value is not None and mine == theirs


Entry = int | _Dim | None


def _passes_through(node: ir.Node) -> bool:
    """Ops that keep a shape tensor's elements in order (Reshape/Squeeze/Unsqueeze between a scalar
    and a 1-D tensor, Cast to int64)."""
    out = node.outputs[0].shape
    if node.op_type == "Cast":
        return node.attributes.get_int("to", 0) == ir.DataType.INT64
    return node.op_type in ("Reshape", "Squeeze", "Unsqueeze") and out is not None and len(out) <= 1


def _entries(shape: ir.Value, depth: int = 16) -> list[Entry] | None:
    """A 1-D int64 shape tensor element by element: an int where constant, a _Dim where it is a dim
    of some tensor, None where otherwise computed; None if even its length is unknown."""
    tensor = ir.convenience.get_const_tensor(shape)
    if tensor is not None:
        return [int(v) for v in tensor.numpy().reshape(-1)]
    producer = shape.producer()
    if depth > 0 and producer is not None and producer.domain in ("", "ai.onnx"):
        found = _producer_entries(producer, depth - 1)
        if found is not None:
            return found
    if shape.shape is None or len(shape.shape) > 1 or not all(isinstance(d, int) for d in shape.shape):
        return None
    return [None] * (shape.shape[0] if len(shape.shape) == 1 else 1)


def _producer_entries(node: ir.Node, depth: int) -> list[Entry] | None:
    op, inputs = node.op_type, node.inputs
    if op == "Shape" and inputs[0].shape is not None:
        dims = inputs[0].shape
        start, end = node.attributes.get_int("start", 0), node.attributes.get_int("end", None)
        axes = range(len(dims))[start:end]
        return [dims[a] if isinstance(dims[a], int) else _Dim(inputs[0], a) for a in axes]
    if op == "Concat" and all(v is not None for v in inputs):
        parts = [_entries(v, depth) for v in inputs]
        return None if any(p is None for p in parts) else [e for p in parts for e in p]
    if _passes_through(node):
        return _entries(inputs[0], depth)
    if op in ("Slice", "Gather"):
        data = _entries(inputs[0], depth)
        bounds = [constant_input_ints(node, i) for i in range(1, len(inputs))]
        if data is None or any(b is None for b in bounds):
            return None
        if op == "Gather":
            indices, n = bounds[0], len(data)
            if node.attributes.get_int("axis", 0) != 0 or not all(-n <= i < n for i in indices):
                return None  # out of range: onnxruntime rejects the model; leave it as it is
            return [data[i] for i in indices]
        starts, ends = bounds[0], bounds[1]
        axes = bounds[2] if len(bounds) > 2 else [0]
        steps = bounds[3] if len(bounds) > 3 else [1]
        if axes not in ([0], [-1]) or len(starts) != 1 or steps[0] == 0:
            return None
        return data[starts[0] : ends[0] : steps[0]]
    if op == "Where":
        return _where_entries(node, depth)
    return None


def _where_entries(node: ir.Node, depth: int) -> list[Entry] | None:
    """TorchScript's Where(Equal(s, -1), 1, s) (expand's -1 meaning "keep"): a dim is never negative,
    so it passes; constants are evaluated."""
    condition, on, off = node.inputs
    test = condition.producer()
    if test is None or test.op_type != "Equal" or test.inputs[0] is not off:
        return None
    against, ones, values = constant_input_ints(test, 1), _entries(on, depth), _entries(off, depth)
    if against is None or values is None or ones is None or any(a >= 0 for a in against):
        return None
    against, ones = (a * len(values) if len(a) == 1 else a for a in (against, ones))
    if len(against) != len(values) or len(ones) != len(values):
        return None
    picked: list[Entry] = []
    for value, one, negative in zip(values, ones, against, strict=True):
        if isinstance(value, int):
            picked.append(one if value == negative else value)
        else:
            picked.append(value if isinstance(value, _Dim) else None)
    return picked


def _candidate(node: ir.Node) -> list[Entry] | None:
    """The target entries of an Expand this rule rewrites: static data shape, some run-time entry
    against a data dim of 1 (else onnx2tf's result shape would already be known), rank 2 or more (a
    rank-1 result has one dim order only; the rule's own index Expands are rank 1)."""
    if node.op_type != "Expand" or node.domain not in ("", "ai.onnx"):
        return None
    data, shape = node.inputs
    if data.shape is None or not all(isinstance(d, int) for d in data.shape):
        return None
    entries = _entries(shape)
    if entries is None or max(len(entries), len(data.shape)) < 2:
        return None
    dims = [1] * (len(entries) - len(data.shape)) + list(data.shape)
    aligned = [1] * (len(dims) - len(entries)) + entries
    if not any(not isinstance(e, int) and d == 1 for e, d in zip(aligned, dims, strict=True)):
        return None
    return entries


def _rewrite(model: ir.Model, node: ir.Node, entries: list[Entry]) -> None:
    data, shape = node.inputs
    b = Emitter(model, node)
    rank = max(len(entries), len(data.shape))
    dims = [1] * (rank - len(data.shape)) + list(data.shape)
    y = data if len(dims) == len(data.shape) else b.op("Reshape", [data, b.ints(dims)])
    offset = rank - len(entries)
    final = list(dims)
    for i, entry in enumerate(entries):
        axis = offset + i
        if not isinstance(entry, int) and dims[axis] == 1:
            length = b.op("Slice", [shape, b.ints([i]), b.ints([i + 1])])
            zeros = b.op("Expand", [b.ints([0]), length])
            y = b.op("Gather", [y, zeros], axis=axis)
        elif isinstance(entry, int):
            final[axis] = entry
    if any(f != d for f, d in zip(final, dims, strict=True)):
        y = b.op("Expand", [y, b.ints(final)])
    b.replace([y])


def expand_static_gather(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every Expand of a static-shape tensor to a partly run-time shape, as Gathers and an Expand."""
    planned = [(n, e) for n, _ in walk(model.graph) if (e := _candidate(n)) is not None]
    if not planned:
        return "no Expand of a static-shape tensor to a run-time dim"
    for node, entries in planned:
        _rewrite(model, node, entries)
    return None


def static_reshape_target(node: ir.Node) -> list[int] | None:
    """A constant target for a Reshape whose target is computed: dims copied from the data at the
    same position become 0 (Reshape's "keep this dim"), a single remaining run-time entry -1. The
    target is for a Reshape without allowzero; one with it (what the dynamo exporter writes) is
    taken where no constant entry is a literal 0, since a copied dim of 0 is kept as 0 either way."""
    if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx"):
        return None
    data, shape = node.inputs
    if data.shape is None:
        return None
    constant = ir.convenience.get_const_tensor(shape)
    if constant is not None:
        return _constant_target_written_out(node, [int(e) for e in constant.numpy().reshape(-1)])
    entries = _entries(shape)
    if entries is None or (node.attributes.get_int("allowzero", 0) and 0 in entries):
        return None
    target: list[int | None] = [
        0 if isinstance(e, _Dim) and i < len(data.shape) and e.same_as(data, i) else e
        for i, e in enumerate(entries)
    ]
    unknown = [i for i, e in enumerate(target) if not isinstance(e, int)]
    if len(unknown) == 1 and -1 not in target and 0 not in target:
        target[unknown[0]] = -1
    if not all(isinstance(e, int) for e in target):
        return None
    return _inferred_written_out(target, data.shape)


def _constant_target_written_out(node: ir.Node, target: list[int]) -> list[int] | None:
    """A constant target with zeros whose -1 can be written out: that spelling, else None. onnx2tf
    fills zeros from the input's dims at every position its own inference leaves unknown, a -1
    included ([0, 0, -1] of [batch, sequence, 4, 16] became [5, 10, 4]: onnxscript's fused LLaMA)."""
    if 0 not in target or -1 not in target or node.attributes.get_int("allowzero", 0):
        return None
    written = _inferred_written_out(target, node.inputs[0].shape)
    return written if written != target else None


def _inferred_written_out(target: list[int], dims: ir.Shape) -> list[int]:
    """The target with its -1 as the number it stands for, where the dims no 0 keeps are static:
    onnx2tf resolves a -1 beside zeros from its own guess of the layout ([0, 0, -1, 16] of a
    [batch, sequence, 64] became [5, 10, 64, 16] in GPT-2's heads)."""
    if -1 not in target or all(isinstance(d, int) for d in dims):
        return target  # all static: onnx2tf infers the -1 itself (a written one moved GQA's heads)
    rest = [d for i, d in enumerate(dims) if not (i < len(target) and target[i] == 0)]
    known = math.prod([e for e in target if e > 0])
    if not all(isinstance(d, int) for d in rest) or known == 0 or math.prod(rest) % known:
        return target
    if math.prod(rest) == 0:
        return target  # a written 0 would mean "keep this dim", not an empty one
    return [math.prod(rest) // known if e == -1 else e for e in target]


def reshape_static_target(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every Reshape whose computed target can be written as a constant gets that constant."""
    planned = [(n, t) for n, _ in walk(model.graph) if (t := static_reshape_target(n)) is not None]
    if not planned:
        return "no Reshape whose computed target has a constant spelling"
    for node, target in planned:
        b = Emitter(model, node)
        b.replace([b.op("Reshape", [node.inputs[0], b.ints(target)])])
    return None


RULES = [
    Rule(
        "expand-static-gather",
        ("conversion-error", "divergence"),
        expand_static_gather,
        "Expand of a static-shape tensor along run-time dims as Gathers of index 0; TF keeps the other dims",
        ops=("Add", "Sub", "Mul", "Div", "Concat"),
    ),
    Rule(
        "reshape-static-target",
        ("conversion-error", "divergence"),
        reshape_static_target,
        "a Reshape's computed target as a constant (0 keeps a dim, -1 the one left), so TF knows its dims",
        ops=("Add", "Sub", "Mul", "Div", "Concat", "Reshape"),
    ),
]
