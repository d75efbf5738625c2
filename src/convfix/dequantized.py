"""A dynamically quantized model as the float model its quantizer started from, for the dynamic and
int8 .tflite files.

onnxruntime's quantize_dynamic writes each MatMul as DynamicQuantizeLinear(x) -> MatMulInteger with
int8 weights -> Cast -> Mul by x_scale * w_scale: activations quantized at run time, which is what
TFLite's dynamic-range mode does itself, and which a full-integer file replaces by calibrated scales.
Converted as spelled out (rewrites/quantization.py), the MatMuls are int32 products of casts: the
dynamic file needs select TF ops and TFLite's int8 calibration aborted on them. So those files are
made from the model with each such MatMul as x @ DequantizeLinear(W): the weights on the model's own
int8 grid (written back into the file: backends/onnx2tf/own_weights.py), activations left to TFLite.
"""

from __future__ import annotations

import onnx_ir as ir
from onnx_ir.passes import common
from onnxscript.rewriter import pattern as orp

from convfix import model_io

_FLOAT, _UINT8 = ir.DataType.FLOAT.value, ir.DataType.UINT8.value


class DynamicMatMulAsFloat(orp.RewriteRuleClassBase):
    """x quantized by DynamicQuantizeLinear, multiplied by an int8 weight, scaled back."""

    def pattern(self, op, x, w, w_scale, w_zero):
        quantized, x_scale, x_zero = op.DynamicQuantizeLinear(x, _outputs=3)
        product = op.MatMulInteger(quantized, w, x_zero, w_zero)
        return op.Mul(op.Cast(product, to=_FLOAT), op.Mul(x_scale, w_scale))

    def check(self, context, w, w_scale, w_zero, **_) -> orp.MatchResult:
        weight, scale = w.const_value, w_scale.const_value
        if weight is None or scale is None or w_zero.const_value is None or w.shape is None:
            return orp.MatchResult().fail("the weight, its scale or zero point is not a constant")
        if len(w.shape) != 2 or scale.size not in (1, w.shape[1]) or w_zero.const_value.size != 1:
            return orp.MatchResult().fail("not a 2-D weight with a per-tensor or per-column scale")
        return orp.MatchResult()

    def rewrite(self, op, x, w, w_scale, w_zero, **_):
        axis = 1 if w_scale.const_value.size > 1 else 0
        return op.MatMul(x, op.DequantizeLinear(w, w_scale, w_zero, axis=axis))


class SpelledOutDynamicMatMulAsFloat(DynamicMatMulAsFloat):
    """The same with DynamicQuantizeLinear spelled out (rewrites/quantization.py), as the repaired
    model holds it: x's rounding is the Round(x / x_scale) the MatMul is scaled back by."""

    def pattern(self, op, x, w, w_scale, w_zero, x_scale, x_zero, x_zero_integer, low, high):
        rounded = op.Add(op.Round(op.Div(x, x_scale)), x_zero)
        quantized = op.Cast(op.Clip(rounded, low, high), to=_UINT8)
        product = op.MatMulInteger(quantized, w, x_zero_integer, w_zero)
        return op.Mul(op.Cast(product, to=_FLOAT), op.Mul(x_scale, w_scale))


_RULES = orp.RewriteRuleSet(
    [
        variant
        for rule in (DynamicMatMulAsFloat().rule(), SpelledOutDynamicMatMulAsFloat().rule())
        for variant in rule.commute()
    ]
)


def dequantized(model: ir.Model) -> tuple[ir.Model, int]:
    """The model with its dynamically quantized MatMuls as float MatMuls of DequantizeLinear of its
    int8 weights (qdq.own_weights finds them there), and how many there were."""
    copy = model_io.clone(model)
    count = _RULES.apply_to_model(copy)
    common.RemoveUnusedNodesPass()(copy)  # the spelled-out quantization of x, unused now
    return copy, count
