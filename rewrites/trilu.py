"""Trilu as Where(mask, x, 0), the mask comparing a constant (col - row) matrix with k.

onnx2tf 1.29 compares k with the input's dims in Python, so a k that is a graph input (or any computed
value) fails the conversion (`Keras symbolic inputs/outputs do not implement __len__`); for k > 0
(upper) or k < 0 (lower) it also builds the triangle as x - band_part(x), which turns an inf or NaN in
the zeroed part into NaN. Where(col - row >= k, x, 0) (upper; <= k for lower) is exact for every k and
dtype, and needs the last two dims static. The finding's node is rewritten, and with it every Trilu whose
k is not a constant: they all fail alike, so one conversion covers them.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import find_node, int64_constant, replace_node
from convfix.rules import Rule, RuleContext


def _k(node: ir.Node) -> ir.Value | None:
    return node.inputs[1] if len(node.inputs) > 1 else None


def _computed_k(node: ir.Node) -> bool:
    k = _k(node)
    return k is not None and ir.convenience.get_const_tensor(k) is None


def _problem(node: ir.Node) -> str | None:
    x = node.inputs[0]
    if x.dtype is None or x.shape is None or len(x.shape) < 2:
        return f"{node.name}: the input's dtype or rank is unknown"
    if not all(isinstance(d, int) for d in x.shape[-2:]):
        return f"{node.name}: the last two dims are not static: the (col - row) mask cannot be spelled out"
    return None


def _diagonals(shape: ir.Shape) -> np.ndarray:
    """col - row over the last two dims, with leading 1s up to the input's rank (same-rank broadcast)."""
    rows, cols = shape[-2], shape[-1]
    offsets = np.arange(cols, dtype=np.int64)[None, :] - np.arange(rows, dtype=np.int64)[:, None]
    return offsets.reshape((1,) * (len(shape) - 2) + (rows, cols))


def _rewrite(node: ir.Node) -> None:
    x, name = node.inputs[0], node.name
    upper = node.attributes.get_int("upper", 1)
    diagonals = ir.node(
        "Constant", [], attributes={"value": ir.tensor(_diagonals(x.shape))}, name=f"{name}_diagonals"
    )
    added = [diagonals]
    k = _k(node)
    if k is None:
        added.append(int64_constant(0, f"{name}_k"))
        k = added[-1].outputs[0]
    zero = ir.node(
        "Constant", [], attributes={"value": ir.tensor(np.zeros((), x.dtype.numpy()))}, name=f"{name}_zero"
    )
    compare = "GreaterOrEqual" if upper else "LessOrEqual"
    mask = ir.node(compare, [diagonals.outputs[0], k], name=f"{name}_mask")
    result = ir.node("Where", [mask.outputs[0], x, zero.outputs[0]], name=f"{name}_where")
    added += [zero, mask, result]
    node.graph.insert_before(node, added)
    replace_node(node, [result.outputs[0]])


def trilu_as_where(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """The finding's Trilu and every Trilu with a computed k."""
    target = find_node(model, finding)
    nodes = [
        n
        for n, _ in walk(model.graph)
        if n.op_type == "Trilu" and n.domain in ("", "ai.onnx") and (n is target or _computed_k(n))
    ]
    if not nodes:
        return "no Trilu at the finding and none with a computed k"
    problem = next((p for p in map(_problem, nodes) if p), None)
    if problem:
        return problem
    for node in nodes:
        _rewrite(node)
    return None


RULES = [
    Rule(
        "trilu-as-where",
        ("conversion-error", "divergence"),
        trilu_as_where,
        "Trilu as Where(constant (col - row) compared with k, x, 0) (onnx2tf fails on a computed k)",
        ops=("Trilu",),
    )
]
