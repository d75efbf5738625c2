"""Reshapes that undo each other, folded away before every conversion (part of `simplify`).

A fused op's decomposition splits heads where the exporter had just merged them: onnxscript's fused
LLaMA hands MultiHeadAttention [B, S, N*h] made from [B, N, S, h] by Transpose and Reshape, and its
decomposition reshapes and transposes straight back. TF runs that, but TFLite's converter fuses the
chain into one reshape whose target it writes from the static type, -1 for every dynamic dim, and
then refuses it ("'tfl.reshape' op requires 'shape' to have at most one dynamic dimension") for a
model with dynamic batch and sequence. onnxscript's own ReshapeReshape rule refuses targets with
two zeros, the form every head split takes ([0, 0, N, h]); these two rules cover it, and the
optimizer's TransposeTranspose then cancels the transposes that become adjacent.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript import rewriter
from onnxscript.rewriter import pattern as orp


def _target(value: ir.Value) -> np.ndarray | None:
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy().reshape(-1)


def _same_dim(a: ir.Value, b: ir.Value, axis: int) -> bool:
    """Whether two values are known to have the same length along `axis`."""
    if a.shape is None or b.shape is None or axis >= min(len(a.shape), len(b.shape)):
        return False
    first, second = a.shape[axis], b.shape[axis]
    if isinstance(first, int) or isinstance(second, int):
        return first == second
    return first.value is not None and first.value == second.value


def _plain(node: ir.Node) -> bool:
    return node.attributes.get_int("allowzero", 0) == 0


class ReshapeOfReshape(orp.RewriteRuleClassBase):
    """Reshape(Reshape(x, a), b) -> Reshape(x, b) where every 0 of b copies a dim that the first
    Reshape kept from x (then it copies x's own)."""

    def pattern(self, op, x, first, second):
        return op.Reshape(op.Reshape(x, first, _outputs=["middle"]), second, _outputs=["result"])

    def check(self, context, x, first, second, middle, result, **_) -> orp.MatchResult:
        check = orp.MatchResult()
        target = _target(second)
        if target is None or not (_plain(middle.producer()) and _plain(result.producer())):
            return check.fail("the outer target is computed, or a Reshape allows zero-sized dims")
        if any(not _same_dim(middle, x, int(axis)) for axis in np.flatnonzero(target == 0)):
            return check.fail("a 0 of the outer target copies a dim the inner Reshape changed")
        return check

    def rewrite(self, op, x, second, **_):
        return op.Reshape(x, second)


class ReshapeToItsOwnShape(orp.RewriteRuleClassBase):
    """Reshape(x, target) -> x where the target keeps every dim: 0 (copy), x's static length, or
    one -1 beside dims that all stay (then it stands for x's own length)."""

    def pattern(self, op, x, target):
        return op.Reshape(x, target, _outputs=["result"])

    def check(self, context, x, target, result, **_) -> orp.MatchResult:
        check = orp.MatchResult()
        dims = _target(target)
        if dims is None or x.shape is None or len(dims) != len(x.shape) or not _plain(result.producer()):
            return check.fail("the target is computed or of another rank")
        kept = [d == 0 or (isinstance(x.shape[i], int) and d == x.shape[i]) for i, d in enumerate(dims)]
        if kept.count(False) > 1 or any(not k and d != -1 for k, d in zip(kept, dims, strict=True)):
            return check.fail("the target changes a dim")
        return check

    def rewrite(self, op, x, **_):
        return op.Identity(x)


RULES = rewriter.RewriteRuleSet([ReshapeOfReshape.rule(), ReshapeToItsOwnShape.rule()])


def fold(model: ir.Model) -> None:
    """Fold the main graph's (and functions') reshape round trips in place."""
    rewriter.rewrite(model, pattern_rewrite_rules=RULES)
