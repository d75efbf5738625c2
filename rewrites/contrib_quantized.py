"""onnxruntime's quantized matrix products spelled out in standard ONNX (onnxruntime is the oracle):

- MatMulNBits(A, B, scales[, zero_points, g_idx, bias]): B packs `bits`-bit integers (2, 4 or 8; the
  low bits of a byte hold the earlier element) in blocks of `block_size` along K, one scale (and zero
  point: packed like B, or a float; 2^(bits-1) when absent) per block. The weights are constants:
  they are dequantized here, W = (q - zero_point) * scale, and the node becomes A @ W^T (+ bias), as
  onnxruntime computes it at accuracy_level 0. At level 4 onnxruntime also rounds A to int8, which
  the op permits and does not define; the reference runs such nodes at level 0 (oracle.py).
- DynamicQuantizeMatMul(A, B, b_scale[, b_zero_point, bias]): DynamicQuantizeLinear(A) (spelled out
  in turn by rewrites/quantization.py), then
  MatMulInteger with B, scaled back by a_scale * b_scale (per column when b_scale is), plus bias.
- MatMulIntegerToFloat(A, B, a_scale, b_scale[, a_zero_point, b_zero_point, bias]): MatMulInteger,
  then the same scaling; a per-column a_scale (one per column of A, not separable) is refused.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from convfix.rewriting import constant_array, optional_input
from convfix.rules import for_contrib_op

MS = "com.microsoft"
_MAX_DEQUANTIZED_BYTES = 8 * 2**30  # float weights a rewrite may make, at most


def _unpacked(data: np.ndarray, bits: int, rows: int) -> np.ndarray:
    """Bytes holding `bits`-bit unsigned integers, earliest in the low bits, as one row per `rows`."""
    shifts = np.arange(8 // bits, dtype=np.uint8) * bits
    values = (data.reshape(rows, -1)[..., None] >> shifts) & ((1 << bits) - 1)
    return values.reshape(rows, -1)


def dequantized(
    node: ir.Node, packed: np.ndarray, scales: np.ndarray, zero_points, group_index
) -> np.ndarray | str:
    """MatMulNBits' weights as floats [N, K] (the scales' dtype), or why not."""
    k, n = node.attributes.get_int("K", 0), node.attributes.get_int("N", 0)
    bits, block = node.attributes.get_int("bits", 4), node.attributes.get_int("block_size", 0)
    if bits not in (2, 4, 8) or block < 16 or k <= 0 or n <= 0:
        return f"bits {bits}, block_size {block}, K {k}, N {n} are not a MatMulNBits layout"
    blocks = -(-k // block)
    if packed.size * (8 // bits) != n * blocks * block or scales.size != n * blocks:
        return "B or scales do not hold N x ceil(K / block_size) blocks"
    if n * k * 4 > _MAX_DEQUANTIZED_BYTES:
        return f"the dequantized weights would take {n * k * 4 / 2**30:.1f} GiB"
    q = _unpacked(packed, bits, n)[:, :k].astype(np.float32)
    scale = scales.reshape(n, blocks).astype(np.float32)
    if zero_points is None:
        zero = np.full((n, blocks), 2 ** (bits - 1), np.float32)
    elif zero_points.dtype == np.uint8:
        zero = _unpacked(zero_points, bits, n)[:, :blocks].astype(np.float32)
    else:
        zero = zero_points.reshape(n, blocks).astype(np.float32)
    columns = np.arange(k) // block if group_index is None else group_index.reshape(-1).astype(np.int64)
    if columns.shape != (k,) or columns.min() < 0 or columns.max() >= blocks:
        return "g_idx does not name a block for each of the K columns"
    return ((q - zero[:, columns]) * scale[:, columns]).astype(scales.dtype)


class MatMulNBitsDequantized(orp.RewriteRuleClassBase):
    def pattern(self, op, a, b, scales):
        return op.MatMulNBits(a, b, scales, _domain=MS, _allow_other_inputs=True, _outputs=["result"])

    def check(self, context, a, b, scales, result, **_) -> orp.MatchResult:
        node = result.producer()
        check = orp.MatchResult()
        if constant_array(b) is None or constant_array(scales) is None:
            return check.fail("B and scales must be constants")
        for index in (3, 4):
            value = optional_input(node, index)
            if value is not None and constant_array(value) is None:
                return check.fail("zero_points and g_idx must be constants")
        weights = self._weights(node)
        return check.fail(weights) if isinstance(weights, str) else check

    @staticmethod
    def _weights(node: ir.Node) -> np.ndarray | str:
        packed, scales = constant_array(node.inputs[1]), constant_array(node.inputs[2])
        zero_points, group_index = (
            constant_array(optional_input(node, 3)),
            constant_array(optional_input(node, 4)),
        )
        return dequantized(node, packed, scales, zero_points, group_index)

    def rewrite(self, op, a, b, scales, result, **_):
        node = result.producer()
        weights = self._weights(node)
        transposed = ir.tensor(np.ascontiguousarray(weights.T), name=f"{node.name}_dequantized")
        product = op.MatMul(a, op.initializer(transposed, transposed.name))
        bias = optional_input(node, 5)
        return product if bias is None else op.Add(product, bias)


def _scaled(op, product_int32: ir.Value, scale: ir.Value, bias: ir.Value | None, like: ir.Value):
    """float(product) * scale (+ bias), in like's dtype."""
    y = op.Mul(op.Cast(product_int32, to=like.dtype.value), scale)
    return y if bias is None else op.Add(y, bias)


def _scalar(value: ir.Value) -> bool:
    return value.shape is not None and all(d == 1 for d in value.shape)


class DynamicQuantizeMatMulDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, a, b, b_scale):
        return op.DynamicQuantizeMatMul(
            a, b, b_scale, _domain=MS, _allow_other_inputs=True, _outputs=["result"]
        )

    def check(self, context, a, **_) -> orp.MatchResult:
        float32 = a.dtype == ir.DataType.FLOAT
        return orp.MatchResult() if float32 else orp.MatchResult().fail("A must be float32")

    def rewrite(self, op, a, b, b_scale, result, **_):
        node = result.producer()
        quantized, a_scale, a_zero = op.DynamicQuantizeLinear(a, _outputs=3)
        product = op.MatMulInteger(quantized, b, a_zero, optional_input(node, 3))
        return _scaled(op, product, op.Mul(a_scale, b_scale), optional_input(node, 4), a)


class MatMulIntegerToFloatDecomposed(orp.RewriteRuleClassBase):
    def pattern(self, op, a, b, a_scale, b_scale):
        return op.MatMulIntegerToFloat(
            a, b, a_scale, b_scale, _domain=MS, _allow_other_inputs=True, _outputs=["result"]
        )

    def check(self, context, a_scale, result, **_) -> orp.MatchResult:
        if not _scalar(a_scale):
            return orp.MatchResult().fail("a per-column a_scale does not factor out of the product")
        return orp.MatchResult()

    def rewrite(self, op, a, b, a_scale, b_scale, result, **_):
        node = result.producer()
        product = op.MatMulInteger(a, b, optional_input(node, 4), optional_input(node, 5))
        return _scaled(op, product, op.Mul(a_scale, b_scale), optional_input(node, 6), a_scale)


RULES = [
    for_contrib_op(
        "contrib-matmul-nbits",
        "MatMulNBits",
        MatMulNBitsDequantized,
        "com.microsoft MatMulNBits as MatMul with its block-quantized weights dequantized",
    ),
    for_contrib_op(
        "contrib-dynamic-quantize-matmul",
        "DynamicQuantizeMatMul",
        DynamicQuantizeMatMulDecomposed,
        "com.microsoft DynamicQuantizeMatMul as DynamicQuantizeLinear, MatMulInteger and scaling",
    ),
    for_contrib_op(
        "contrib-matmul-integer-to-float",
        "MatMulIntegerToFloat",
        MatMulIntegerToFloatDecomposed,
        "com.microsoft MatMulIntegerToFloat as MatMulInteger and scaling",
    ),
]
