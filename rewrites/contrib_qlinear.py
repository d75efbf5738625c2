"""onnxruntime's QOperator-format ops (com.microsoft; onnx2tf knows neither) spelled out in standard
ONNX with onnxruntime's own integer arithmetic, so that the float file computes the same integers:

- QLinearGlobalAveragePool(X, x_scale, x_zero_point, y_scale, y_zero_point), channels first: the
  int32 sum over the spatial axes less x_zero_point * N, times x_scale / (y_scale * N) computed in
  float32 as onnxruntime's MLAS computes it, rounded half to even, plus y_zero_point, saturated.
  The float32 sum is exact while N * 255 stays below 2**24.
- QLinearAdd(A, a_scale, a_zero_point, B, b_scale, b_zero_point, C_scale, C_zero_point): the
  centered integers times their scales, added, divided by C_scale (float32, in the order of
  onnxruntime's x86 kernel), rounded, plus C_zero_point, saturated; QLinearMul: the product of the
  centered integers times a_scale * b_scale / C_scale.
- QGemm(A, a_scale, a_zero_point, B, b_scale, b_zero_point[, C], y_scale, y_zero_point; alpha,
  transA, transB): the int32 product of the centered integers plus the int32 bias C, times
  alpha * a_scale * b_scale / y_scale (per column where b_scale is), rounded, plus y_zero_point,
  saturated. A QGemm without y_scale (a float output) is refused.
Scales and zero points must be constants (onnxruntime's quantizer writes them so).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from convfix.rewriting import constant_array, optional_input
from convfix.rules import for_contrib_op

MS = "com.microsoft"
_EXACT_SUM = 2**24


def _saturated(op, rounded: ir.Value, zero_point: np.ndarray, to: ir.DataType) -> ir.Value:
    """rounded + zero_point, clipped to `to`'s range and cast to it (rounded: float32)."""
    info = np.iinfo(to.numpy())
    shifted = op.Add(rounded, op.Constant(value=ir.tensor(zero_point.astype(np.float32))))
    low, high = (op.Constant(value=ir.tensor(np.array(v, np.float32))) for v in (info.min, info.max))
    return op.Cast(op.Clip(shifted, low, high), to=to.value)


class QLinearGlobalAveragePoolSpelledOut(orp.RewriteRuleClassBase):
    def pattern(self, op, x, x_scale, x_zero, y_scale, y_zero):
        return op.QLinearGlobalAveragePool(x, x_scale, x_zero, y_scale, y_zero, _domain=MS, _outputs=["y"])

    def check(self, context, x, x_scale, x_zero, y_scale, y_zero, y, **_) -> orp.MatchResult:
        result = orp.MatchResult()
        if y.producer().attributes.get_int("channels_last", 0):
            return result.fail("channels-last input")
        if any(
            constant_array(v) is None or constant_array(v).size != 1
            for v in (x_scale, x_zero, y_scale, y_zero)
        ):
            return result.fail("scales and zero points must be per-tensor constants")
        if x.shape is None or len(x.shape) < 3 or not all(isinstance(d, int) for d in x.shape[2:]):
            return result.fail("the spatial dims must be static")
        if int(np.prod(x.shape[2:])) * 255 >= _EXACT_SUM:
            return result.fail("too many elements per channel for an exact float32 sum")
        return result

    def rewrite(self, op, x, x_scale, x_zero, y_scale, y_zero, **_):
        rank = len(x.shape)
        count = np.float32(np.prod(x.shape[2:]))
        multiplier = np.float32(constant_array(x_scale)) / (np.float32(constant_array(y_scale)) * count)
        axes = op.Constant(value=ir.tensor(np.arange(2, rank, dtype=np.int64)))
        total = op.ReduceSum(op.Cast(x, to=ir.DataType.FLOAT.value), axes, keepdims=1)
        offset = np.float32(constant_array(x_zero).astype(np.float32) * count)
        centered = op.Sub(total, op.Constant(value=ir.tensor(np.asarray(offset).reshape(()))))
        scaled = op.Mul(centered, op.Constant(value=ir.tensor(np.asarray(multiplier).reshape(()))))
        return _saturated(op, op.Round(scaled), constant_array(y_zero).reshape(()), y_zero.dtype)


def _centered(op, x: ir.Value, zero: ir.Value) -> ir.Value:
    """x - zero_point in float32 (exact: both are 8-bit integers)."""
    as_float = op.Cast(x, to=ir.DataType.FLOAT.value)
    return op.Sub(as_float, op.Constant(value=ir.tensor(constant_array(zero).astype(np.float32).reshape(()))))


def _scalar(array: np.ndarray) -> ir.Value:
    return ir.tensor(np.asarray(array, np.float32).reshape(()))


def _per_tensor(*values: ir.Value) -> bool:
    return all(constant_array(v) is not None and constant_array(v).size == 1 for v in values)


class _QLinearBinary(orp.RewriteRuleClassBase):
    """A com.microsoft QLinear op of two quantized inputs, per-tensor constant scales and zero points."""

    op_type = ""

    def pattern(self, op, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero):
        binary = getattr(op, self.op_type)
        return binary(a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero, _domain=MS, _outputs=["c"])

    def check(self, context, a_scale, a_zero, b_scale, b_zero, c_scale, c_zero, **_) -> orp.MatchResult:
        if _per_tensor(a_scale, a_zero, b_scale, b_zero, c_scale, c_zero):
            return orp.MatchResult()
        return orp.MatchResult().fail("scales and zero points must be per-tensor constants")


class QLinearAddSpelledOut(_QLinearBinary):
    """C = round(((A - a_zero) * a_scale + (B - b_zero) * b_scale) / c_scale) + c_zero, saturated:
    onnxruntime's x86 AVX2 kernel (MLAS QLinearBinaryOpKernelAvx2) in its float32 order."""

    op_type = "QLinearAdd"

    def rewrite(self, op, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero, **_):
        scaled_a = op.Mul(_centered(op, a, a_zero), op.Constant(value=_scalar(constant_array(a_scale))))
        scaled_b = op.Mul(_centered(op, b, b_zero), op.Constant(value=_scalar(constant_array(b_scale))))
        total = op.Div(op.Add(scaled_a, scaled_b), op.Constant(value=_scalar(constant_array(c_scale))))
        return _saturated(op, op.Round(total), constant_array(c_zero).reshape(()), c_zero.dtype)


class QLinearMulSpelledOut(_QLinearBinary):
    """C = round((A - a_zero) * (B - b_zero) * (a_scale * b_scale / c_scale)) + c_zero."""

    op_type = "QLinearMul"

    def rewrite(self, op, a, a_scale, a_zero, b, b_scale, b_zero, c_scale, c_zero, **_):
        ratio = (
            np.float32(constant_array(a_scale))
            * np.float32(constant_array(b_scale))
            / np.float32(constant_array(c_scale))
        )
        product = op.Mul(_centered(op, a, a_zero), _centered(op, b, b_zero))
        scaled = op.Mul(product, op.Constant(value=_scalar(ratio)))
        return _saturated(op, op.Round(scaled), constant_array(c_zero).reshape(()), c_zero.dtype)


class QGemmSpelledOut(orp.RewriteRuleClassBase):
    def pattern(self, op, a, a_scale, a_zero, b, b_scale, b_zero):
        return op.QGemm(
            a, a_scale, a_zero, b, b_scale, b_zero, _domain=MS, _allow_other_inputs=True, _outputs=["y"]
        )

    def check(self, context, a, a_scale, a_zero, b, b_scale, b_zero, y, **_) -> orp.MatchResult:
        result = orp.MatchResult()
        node = y.producer()
        y_scale, y_zero = optional_input(node, 7), optional_input(node, 8)
        if y_scale is None:
            return result.fail("a float output (no y_scale)")
        if node.attributes.get_int("transA", 0):
            return result.fail("transA")
        if any(constant_array(v) is None for v in (a_scale, a_zero, b_scale, y_scale, y_zero)):
            return result.fail("scales and zero points must be constants")
        if b_zero is not None and constant_array(b_zero) is None:
            return result.fail("b_zero_point must be a constant")
        bias = optional_input(node, 6)
        if bias is not None and bias.dtype != ir.DataType.INT32:
            return result.fail("a non-int32 bias")
        return result

    def rewrite(self, op, a, a_scale, a_zero, b, b_scale, b_zero, y, **_):
        node = y.producer()
        int32 = ir.DataType.INT32.value
        centered_a = op.Sub(op.Cast(a, to=int32), op.Cast(a_zero, to=int32))
        b_int = op.Cast(b, to=int32)
        if node.attributes.get_int("transB", 0):
            b_int = op.Transpose(b_int, perm=[1, 0])
        if b_zero is not None:
            b_int = op.Sub(b_int, op.Cast(b_zero, to=int32))
        accumulated = op.MatMul(centered_a, b_int)
        bias = optional_input(node, 6)
        if bias is not None:
            accumulated = op.Add(accumulated, bias)
        alpha = np.float32(node.attributes.get_float("alpha", 1.0))
        scale = alpha * np.float32(constant_array(a_scale)) * constant_array(b_scale).astype(np.float32)
        multiplier = (scale / np.float32(constant_array(optional_input(node, 7)))).astype(np.float32)
        as_float = op.Cast(accumulated, to=ir.DataType.FLOAT.value)
        scaled = op.Mul(as_float, op.Constant(value=ir.tensor(multiplier)))
        y_zero = optional_input(node, 8)
        return _saturated(op, op.Round(scaled), constant_array(y_zero), y_zero.dtype)


RULES = [
    for_contrib_op(
        "contrib-qlinear-add",
        "QLinearAdd",
        QLinearAddSpelledOut,
        "com.microsoft QLinearAdd as onnxruntime's float sum of the rescaled centered integers, quantized",
    ),
    for_contrib_op(
        "contrib-qlinear-mul",
        "QLinearMul",
        QLinearMulSpelledOut,
        "com.microsoft QLinearMul as the product of the centered integers, rescaled and quantized",
    ),
    for_contrib_op(
        "contrib-qlinear-global-average-pool",
        "QLinearGlobalAveragePool",
        QLinearGlobalAveragePoolSpelledOut,
        "com.microsoft QLinearGlobalAveragePool as onnxruntime's int32 sum, rescaled and quantized",
    ),
    for_contrib_op(
        "contrib-qgemm",
        "QGemm",
        QGemmSpelledOut,
        "com.microsoft QGemm as an int32 MatMul of the centered integers plus bias, rescaled and quantized",
    ),
]
