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
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import Emitter
from convfix.rules import Rule, RuleContext


def _target_entries(shape: ir.Value) -> list[int | None] | None:
    """Expand's target shape element by element: an int where it is a constant, None where computed;
    None if even its length is unknown."""
    tensor = ir.convenience.get_const_tensor(shape)
    if tensor is not None:
        return [int(v) for v in tensor.numpy().reshape(-1)]
    producer = shape.producer()
    if producer is not None and producer.op_type == "Concat" and producer.domain in ("", "ai.onnx"):
        entries: list[int | None] = []
        for piece in producer.inputs:
            part = None if piece is None else _target_entries(piece)
            if part is None:
                return None
            entries.extend(part)
        return entries
    if shape.shape is None or len(shape.shape) != 1 or not isinstance(shape.shape[0], int):
        return None
    return [None] * shape.shape[0]


def _candidate(node: ir.Node) -> list[int | None] | None:
    """The target entries of an Expand this rule rewrites: static data shape, some run-time entry
    against a data dim of 1 (else onnx2tf's result shape would already be known), rank 2 or more (a
    rank-1 result has one dim order only; the rule's own index Expands are rank 1)."""
    if node.op_type != "Expand" or node.domain not in ("", "ai.onnx"):
        return None
    data, shape = node.inputs
    if data.shape is None or not all(isinstance(d, int) for d in data.shape):
        return None
    entries = _target_entries(shape)
    if entries is None or max(len(entries), len(data.shape)) < 2:
        return None
    dims = [1] * (len(entries) - len(data.shape)) + list(data.shape)
    aligned = [None] * (len(dims) - len(entries)) + entries
    if not any(e is None and d == 1 for e, d in zip(aligned, dims, strict=True)):
        return None
    return entries


def _rewrite(model: ir.Model, node: ir.Node, entries: list[int | None]) -> None:
    data, shape = node.inputs
    b = Emitter(model, node)
    rank = max(len(entries), len(data.shape))
    dims = [1] * (rank - len(data.shape)) + list(data.shape)
    y = data if len(dims) == len(data.shape) else b.op("Reshape", [data, b.ints(dims)])
    offset = rank - len(entries)
    final = list(dims)
    for i, entry in enumerate(entries):
        axis = offset + i
        if entry is None and dims[axis] == 1:
            length = b.op("Slice", [shape, b.ints([i]), b.ints([i + 1])])
            zeros = b.op("Expand", [b.ints([0]), length])
            y = b.op("Gather", [y, zeros], axis=axis)
        elif entry is not None:
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


RULES = [
    Rule(
        "expand-static-gather",
        ("conversion-error", "divergence"),
        expand_static_gather,
        "Expand of a static-shape tensor along run-time dims as Gathers of index 0; TF keeps the other dims",
        ops=("Add", "Sub", "Mul", "Div", "Concat"),
    ),
]
