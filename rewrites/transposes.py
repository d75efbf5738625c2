"""A Transpose that moves axis 0 away, when onnx2tf cannot tell its output dims apart, done one rank up.

onnx2tf 1.29.24 (ops/Transpose.py) does not apply the perm of a Transpose whose perm[0] is not 0: it
rebuilds the perm by matching each dim of the TF input's static shape to an equal dim of the ONNX
output shape, the first one not taken. With two unknown dims (None equals None) or two equal sizes, the
first match wins and the rebuilt perm is the identity: x [batch, seq, 8] -> Transpose(1, 0, 2), as
PyTorch exports every batch_first LSTM/GRU, comes out [batch, seq, 8], and the LSTM after it then
runs over the batch ("Incompatible shapes: [10,64] vs. [5,64]" in its cell), or the result is silently
not transposed. A perm that starts with 0 is converted axis by axis instead, so the same Transpose is
spelled Unsqueeze(0) -> Transpose(0, perm + 1) -> Squeeze(0): exact, and its perm keeps axis 0.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import Emitter
from convfix.rules import Rule, RuleContext


def _ambiguous(node: ir.Node) -> bool:
    """Whether onnx2tf would rebuild node's perm from output dims it cannot tell apart. An output
    without a shape counts as all unknown: what onnx2tf reads is whatever shape inference finds."""
    perm = list(node.attributes.get_ints("perm", []))
    if not perm or perm[0] == 0:
        return False
    shape = node.outputs[0].shape
    dims = [None] * len(perm) if shape is None else [d if isinstance(d, int) else None for d in shape]
    return len(set(dims)) < len(dims) or dims.count(None) > 1


def transpose_leading_zero(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every such Transpose (onnx2tf converts them all alike)."""
    nodes = [
        n
        for n, _ in walk(model.graph)
        if n.op_type == "Transpose" and n.domain in ("", "ai.onnx") and _ambiguous(n)
    ]
    if not nodes:
        return "no Transpose with perm[0] != 0 and output dims onnx2tf cannot tell apart"
    for node in nodes:
        b = Emitter(model, node)
        perm = list(node.attributes.get_ints("perm"))
        up = b.with_axes("Unsqueeze", node.inputs[0], [0])
        moved = b.op("Transpose", [up], perm=[0, *(p + 1 for p in perm)])
        b.replace([b.with_axes("Squeeze", moved, [0])])
    return None


RULES = [
    Rule(
        "transpose-leading-zero",
        ("conversion-error", "divergence"),
        transpose_leading_zero,
        "a Transpose with perm[0] != 0 over unknown or equal dims as Unsqueeze(0), Transpose(0, perm + 1), "
        "Squeeze(0) (onnx2tf rebuilds such a perm from the dims and gets the identity)",
    )
]
