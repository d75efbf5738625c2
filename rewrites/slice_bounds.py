"""Slice bounds that count from the end, made non-negative, with the axes spelled out.

onnx2tf 1.29 turns a Slice into `tf.strided_slice` with a begin (end) mask bit set wherever a start (end)
is <= 0, meant for "from the first element" (or "to the last"); it first adds the dim to negative
bounds, but only when the Slice has an explicit axes input and the dim is static. A Slice without
axes and with a negative bound, as torch.export writes `shape[-2:-1]` in attention shape arithmetic,
so silently starts at 0 or runs to the end (seen: a (3,) reshape shape becomes (9,), and a Transpose
after the Reshape fails with `Cannot take the length of shape with unknown rank`). Adding the dim and
clamping to [0, dim] as ONNX does, on a static dim, and giving the default axes explicitly is exact.
Every such Slice in the model is rewritten; a detector flags those without axes before conversion,
since the error surfaces at a node downstream, never at the Slice.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import constant_input_ints, int64_constant
from convfix.rules import Rule, RuleContext

_BOUNDS = (1, 2)  # the starts and ends inputs


def counts_from_end(node: ir.Node) -> bool:
    """A Slice (opset 10+) with a constant bound below zero."""
    if node.op_type != "Slice" or node.domain not in ("", "ai.onnx") or len(node.inputs) < 3:
        return False
    return any(any(v < 0 for v in constant_input_ints(node, i) or ()) for i in _BOUNDS)


def _from_start(value: int, dim: int) -> int:
    """ONNX's reading of a bound on a dim, for a positive step: from the end if negative, clamped."""
    return min(max(value + dim, 0), dim) if value < 0 else value


def _axes(node: ir.Node, rank: int) -> list[int] | None:
    """The sliced axes, non-negative (the default: one per start), or None when they are computed."""
    given = constant_input_ints(node, 3)
    if given is not None:
        return [a % rank for a in given]
    computed = len(node.inputs) > 3 and node.inputs[3] is not None
    return None if computed else list(range(len(constant_input_ints(node, 1) or ())))


def _plan(node: ir.Node) -> tuple[list[int], list[list[int]]] | str:
    """The sliced axes and the bounds made non-negative, or why not."""
    shape = node.inputs[0].shape
    if shape is None:
        return f"{node.name}: the input's rank is unknown"
    axes = _axes(node, len(shape))
    bounds = [constant_input_ints(node, i) for i in _BOUNDS]
    if axes is None or None in bounds:
        return f"{node.name}: the starts, ends or axes are computed"
    if any(s < 0 for s in constant_input_ints(node, 4) or ()):
        return f"{node.name}: a negative step (slice-negative-step handles it)"
    if any(v < 0 and not isinstance(shape[a], int) for b in bounds for a, v in zip(axes, b, strict=True)):
        return f"{node.name}: a bound counts from the end of a dim that is not static"
    return axes, [[_from_start(v, shape[a]) for a, v in zip(axes, b, strict=True)] for b in bounds]


def _rewrite(node: ir.Node, axes: list[int], bounds: list[list[int]]) -> None:
    added = [
        int64_constant(b, f"{node.name}_{part}") for part, b in zip(("starts", "ends"), bounds, strict=True)
    ]
    added.append(int64_constant(axes, f"{node.name}_axes"))
    node.graph.insert_before(node, added)
    if len(node.inputs) < 4:
        node.resize_inputs(4)
    for index, constant in zip((1, 2, 3), added, strict=True):
        node.replace_input_with(index, constant.outputs[0])


def slice_bounds_from_start(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every Slice with a negative constant bound on a static dim, wherever the finding is."""
    plans = [(n, _plan(n)) for n, _ in walk(model.graph) if counts_from_end(n)]
    if not plans:
        return "no Slice with a constant bound counting from the end"
    doable = [(n, p) for n, p in plans if not isinstance(p, str)]
    if not doable:
        return plans[0][1]
    for node, (axes, bounds) in doable:
        _rewrite(node, axes, bounds)
    return None


RULES = [
    Rule(
        "slice-bounds-from-start",
        ("conversion-error", "divergence"),
        slice_bounds_from_start,
        "Slice bounds counting from the end made non-negative on static dims, axes explicit",
        ops=("Slice",),
    )
]
