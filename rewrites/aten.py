"""ATen fallbacks (`org.pytorch.aten`) that the TorchScript exporter leaves, decomposed into ONNX ops.

The exporter emits either a node named after the op (`operator_export_type=ONNX_FALLTHROUGH`) or an
`ATen` node whose `operator` attribute names it (`ONNX_ATEN_FALLBACK`): each decomposition matches both.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from convfix.rules import from_rewrite_rules

ATEN = "org.pytorch.aten"


def _const(op, value: float, like: ir.Value) -> ir.Value:
    return op.Constant(value=ir.tensor(np.array(value, dtype=like.dtype.numpy())))


def _is_float(context, x: ir.Value, **_) -> bool:
    return x.dtype is not None and x.dtype.is_floating_point()


def _entr(op, x: ir.Value, **_) -> ir.Value:
    """entr(x) = -x*log(x) for x > 0, 0 at 0, -inf below 0, NaN for NaN (as torch.special.entr)."""
    zero = _const(op, 0.0, x)
    one = _const(op, 1.0, x)
    positive = op.Greater(x, zero)
    safe = op.Where(positive, x, one)
    inner = op.Neg(op.Mul(safe, op.Log(safe)))
    # -inf is computed, not a constant: the TFLite writer stores a -inf constant as -FLT_MAX (seen here).
    # Where x < 0, |sign(x)| - 1 is 0 and its log is -inf.
    minus_inf = op.Log(op.Sub(op.Abs(op.Sign(x)), one))
    # x * 0 keeps NaN as NaN and gives 0 at 0.
    rest = op.Where(op.Less(x, zero), minus_inf, op.Mul(x, zero))
    return op.Where(positive, inner, rest)


entr_fallthrough = pattern.RewriteRule(
    lambda op, x: op.special_entr(x, _domain=ATEN), _entr, _is_float, name="aten_special_entr"
)
entr_aten_node = pattern.RewriteRule(
    lambda op, x: op.ATen(x, _domain=ATEN, operator="special_entr"),
    _entr,
    _is_float,
    name="aten_ATen_special_entr",
)

RULES = [
    from_rewrite_rules(
        "decompose-aten-entr",
        ("unsupported-op",),
        (f"{ATEN}::special_entr",),
        [entr_fallthrough, entr_aten_node],
        "torch.special.entr as Where/Log/Mul: -x*log(x) for x>0, 0 at 0, -inf below",
    )
]
