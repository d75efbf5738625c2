"""com.microsoft activations and matrix products, as onnxruntime's optimizer fuses them and onnx2tf
does not know them, spelled out in standard ONNX (onnxruntime, which runs them, is the oracle):

- Gelu(x) = x/2 (1 + erf(x / sqrt 2)); BiasGelu(x, b) = Gelu(x + b);
- FastGelu(x[, b]) = y/2 (1 + tanh(sqrt(2/pi) (y + 0.044715 y^3))), y = x + b;
- QuickGelu(x) = x sigmoid(alpha x), alpha 1.702 by default;
- BiasAdd(x, bias, skip) = x + bias + skip (onnxruntime runs it only on GPU: the oracle's reference
  kernel for it is written from the spec, runtimes/contrib.py);
- FusedMatMul(A, B) = alpha op(A) op(B), op transposing the last two dims when transA/transB
  (transBatchA/transBatchB, which move batch dims, are refused).
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from convfix.rules import for_contrib_op

MS = "com.microsoft"


def _const(op, value: float, like: ir.Value) -> ir.Value:
    return op.Constant(value=ir.tensor(np.array(value, dtype=like.dtype.numpy())))


def _is_float(value: ir.Value) -> bool:
    return value.dtype is not None and value.dtype.is_floating_point()


def _erf_gelu(op, x: ir.Value, like: ir.Value) -> ir.Value:
    """x/2 (1 + erf(x / sqrt 2)), constants of like's dtype (x may be a value just built: no dtype yet)."""
    inner = op.Erf(op.Mul(x, _const(op, 1 / math.sqrt(2.0), like)))
    return op.Mul(op.Mul(x, _const(op, 0.5, like)), op.Add(inner, _const(op, 1.0, like)))


class GeluDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, x):
        return op.Gelu(x, _domain=MS)

    def check(self, context, x, **_) -> orp.MatchResult:
        return orp.MatchResult() if _is_float(x) else orp.MatchResult().fail("dtype unknown")

    def rewrite(self, op, x, **_):
        return _erf_gelu(op, x, x)


class BiasGeluDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, x, bias):
        return op.BiasGelu(x, bias, _domain=MS)

    def check(self, context, x, **_) -> orp.MatchResult:
        return orp.MatchResult() if _is_float(x) else orp.MatchResult().fail("dtype unknown")

    def rewrite(self, op, x, bias, **_):
        return _erf_gelu(op, op.Add(x, bias), x)


class FastGeluDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, x):
        return op.FastGelu(x, _domain=MS, _allow_other_inputs=True, _outputs=["result"])

    def check(self, context, x, result, **_) -> orp.MatchResult:
        return orp.MatchResult() if _is_float(x) else orp.MatchResult().fail("dtype unknown")

    def rewrite(self, op, x, result, **_):
        inputs = result.producer().inputs
        y = op.Add(x, inputs[1]) if len(inputs) > 1 and inputs[1] is not None else x
        cube = op.Mul(op.Mul(y, y), y)
        inner = op.Mul(
            op.Add(y, op.Mul(cube, _const(op, 0.044715, x))), _const(op, math.sqrt(2 / math.pi), x)
        )
        return op.Mul(op.Mul(y, _const(op, 0.5, x)), op.Add(op.Tanh(inner), _const(op, 1.0, x)))


class QuickGeluDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, x):
        return op.QuickGelu(x, _domain=MS, _outputs=["result"])

    def check(self, context, x, result, **_) -> orp.MatchResult:
        return orp.MatchResult() if _is_float(x) else orp.MatchResult().fail("dtype unknown")

    def rewrite(self, op, x, result, **_):
        alpha = result.producer().attributes.get_float("alpha", 1.702)
        return op.Mul(x, op.Sigmoid(op.Mul(x, _const(op, alpha, x))))


class BiasAddDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, x, bias, skip):
        return op.BiasAdd(x, bias, skip, _domain=MS)

    def rewrite(self, op, x, bias, skip, **_):
        return op.Add(op.Add(x, bias), skip)


class FusedMatMulDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, a, b):
        return op.FusedMatMul(a, b, _domain=MS, _outputs=["result"])

    def check(self, context, a, b, result, **_) -> orp.MatchResult:
        node = result.producer()
        check = orp.MatchResult()
        if node.attributes.get_int("transBatchA", 0) or node.attributes.get_int("transBatchB", 0):
            return check.fail("transBatchA/transBatchB move batch dims: not spelled out")
        for value, flag in ((a, "transA"), (b, "transB")):
            if node.attributes.get_int(flag, 0) and (value.shape is None or len(value.shape) < 2):
                return check.fail(f"{flag} needs the input's rank")
        return check if _is_float(a) else check.fail("dtype unknown")

    def rewrite(self, op, a, b, result, **_):
        node = result.producer()

        def operand(value: ir.Value, flag: str) -> ir.Value:
            if not node.attributes.get_int(flag, 0):
                return value
            rank = len(value.shape)
            return op.Transpose(value, perm=[*range(rank - 2), rank - 1, rank - 2])

        product = op.MatMul(operand(a, "transA"), operand(b, "transB"))
        alpha = node.attributes.get_float("alpha", 1.0)
        return product if alpha == 1.0 else op.Mul(product, _const(op, alpha, a))


RULES = [
    for_contrib_op("contrib-gelu", "Gelu", GeluDecomposed, "com.microsoft Gelu as x/2 (1 + erf(x/sqrt 2))"),
    for_contrib_op(
        "contrib-bias-gelu", "BiasGelu", BiasGeluDecomposed, "com.microsoft BiasGelu as Gelu(x + bias)"
    ),
    for_contrib_op(
        "contrib-fast-gelu", "FastGelu", FastGeluDecomposed, "com.microsoft FastGelu as its tanh formula"
    ),
    for_contrib_op(
        "contrib-quick-gelu",
        "QuickGelu",
        QuickGeluDecomposed,
        "com.microsoft QuickGelu as x sigmoid(alpha x)",
    ),
    for_contrib_op(
        "contrib-bias-add", "BiasAdd", BiasAddDecomposed, "com.microsoft BiasAdd as x + bias + skip"
    ),
    for_contrib_op(
        "contrib-fused-matmul",
        "FusedMatMul",
        FusedMatMulDecomposed,
        "com.microsoft FusedMatMul as alpha MatMul(op(A), op(B)), op a transpose of the last two dims",
    ),
]
