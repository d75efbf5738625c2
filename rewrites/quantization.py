"""Quantization ops whose onnx2tf conversion returns other values than ONNX defines.

onnx2tf converts QuantizeLinear to a fake quantization: it returns the DEquantized float, not the
integer ONNX defines (seen: DynamicQuantizeLinear's uint8 output off by up to 253 once cast back), and
its QLinearMatMul likewise. The ops are spelled out as their definitions with plain ops:
- QuantizeLinear: saturate(round(x / scale) + zero_point) as Div, Round (half to even, as ONNX),
  Add, Clip to the integer type's range and Cast; per-axis scales reshaped to broadcast along the axis.
- DynamicQuantizeLinear: its ONNX function body (scale from the tensor's range widened to 0, zero point
  saturated then rounded), its QuantizeLinear spelled out as above.
- DequantizeLinear: (x - zero_point) * scale, the integers cast to the scale's float type (onnx2tf
  lays a per-channel scale along the wrong axis of a folded int8 weight: errors of 1e-2).
- QLinearMatMul: the integer product of (a - a_zero_point) and (b - b_zero_point) in int32, scaled by
  a_scale * b_scale / y_scale in float32, then quantized as above.
- QLinearConv (onnx2tf fails on it): the Conv of (x - x_zero_point) and (w - w_zero_point) in
  float32 with the int32 bias as its bias (ONNX's Conv takes no integers; exact while every sum stays
  below 2**24, which a kernel of up to 256 taps of 8-bit values guarantees (more taps: one Conv per
  slice of input channels, summed in int32), and |bias| under 2**23;
  a separate Add of the bias laid along the channels came back wrong from onnx2tf), scaled by
  x_scale * w_scale / y_scale (w_scale per output channel or per tensor), then quantized as above;
  the input's zero point per tensor, the weight's per tensor or per output channel (onnxruntime's
  per-channel quantizer writes one per channel, all 0); a constant weight centered here, as a
  constant (onnx2tf lays a computed 4-D weight out as an activation: a 3x3 kernel came out
  transposed). A model below opset 11 (no Round) is first moved to opset 11 by onnx's version
  converter.
Exact for 8-bit and 16-bit integer types, per tensor, per axis or per block (float8 outputs are refused).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern as orp

from convfix.findings import Finding
from convfix.rewriting import Emitter, default_opset, standard_node, upgrade_opset
from convfix.rules import Rule, RuleContext, from_rewrite_rules

_INTEGERS = {ir.DataType.UINT8, ir.DataType.INT8, ir.DataType.UINT16, ir.DataType.INT16}


def _zero_point_type(node: ir.Node, index: int) -> ir.DataType | None:
    """The output's integer type: the zero point's, or the output_dtype attribute's, or uint8."""
    point = node.inputs[index] if len(node.inputs) > index else None
    if point is not None:
        return point.dtype
    return ir.DataType(node.attributes.get_int("output_dtype", 0) or ir.DataType.UINT8)


def _per_axis(b: Emitter, value: ir.Value, axis: int, rank: int) -> ir.Value:
    """A 1-D scale or zero point reshaped to broadcast along `axis` of a rank-`rank` tensor."""
    if value.shape is None or len(value.shape) == 0:
        return value
    shape = [1] * rank
    shape[axis] = -1
    return b.op("Reshape", [value, b.const(np.array(shape, np.int64))])


def _along(b: Emitter, node: ir.Node, value: ir.Value, x: ir.Value) -> ir.Value | str:
    """A scale or zero point broadcasting against x: per tensor, per axis, or per block of
    `block_size` along the axis (repeated to the axis' static length with a Gather)."""
    rank = len(x.shape)
    axis = node.attributes.get_int("axis", 1)
    axis = axis + rank if axis < 0 else axis
    block = node.attributes.get_int("block_size", 0)
    if not block:
        return _per_axis(b, value, axis, rank)
    length = x.shape[axis]
    if not isinstance(length, int):
        return "blocked quantization along a dynamic axis"
    return b.op("Gather", [value, b.const(np.arange(length, dtype=np.int64) // block)], axis=axis)


def _quantized(
    b: Emitter, x: ir.Value, dtype: ir.DataType, scale: ir.Value, point: ir.Value | None, to: ir.DataType
) -> ir.Value:
    """saturate(round(x / scale) + zero_point) in `to` (x and scale of the float `dtype`)."""
    y = b.op("Round", [b.op("Div", [x, scale])])
    if point is not None:
        y = b.op("Add", [y, b.op("Cast", [point], to=dtype)])
    info = np.iinfo(to.numpy())
    low, high = (b.const(np.array(v, dtype.numpy())) for v in (info.min, info.max))
    return b.op("Cast", [b.op("Clip", [y, low, high])], to=to)


def quantize_linear_spelled_out(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "QuantizeLinear")
    if node is None:
        return "not a QuantizeLinear node"
    x, scale = node.inputs[0], node.inputs[1]
    point = node.inputs[2] if len(node.inputs) > 2 else None
    to = _zero_point_type(node, 2)
    if to not in _INTEGERS:
        return "a non-integer quantization"
    if x.dtype is None or x.shape is None or scale.dtype != x.dtype:
        return "the input's dtype or rank is unknown, or the scale has another dtype"
    b = Emitter(model, node)
    scale = _along(b, node, scale, x)
    point = None if point is None else _along(b, node, point, x)
    if isinstance(scale, str) or isinstance(point, str):
        return scale if isinstance(scale, str) else point
    b.replace([_quantized(b, x, x.dtype, scale, point, to)])
    return None


def dequantize_linear_spelled_out(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "DequantizeLinear")
    if node is None:
        return "not a DequantizeLinear node"
    x, scale = node.inputs[0], node.inputs[1]
    point = node.inputs[2] if len(node.inputs) > 2 else None
    if x.dtype not in {*_INTEGERS, ir.DataType.INT32}:
        return "a non-integer dequantization"
    if x.shape is None or scale.dtype is None:
        return "the input's rank or the scale's dtype is unknown"
    b = Emitter(model, node)
    scale_along = _along(b, node, scale, x)
    point_along = None if point is None else _along(b, node, point, x)
    if isinstance(scale_along, str) or isinstance(point_along, str):
        return scale_along if isinstance(scale_along, str) else point_along
    y = b.op("Cast", [x], to=scale.dtype)
    if point_along is not None:
        y = b.op("Sub", [y, b.op("Cast", [point_along], to=scale.dtype)])
    b.replace([b.op("Mul", [y, scale_along])])
    return None


def _requantized(
    b: Emitter, product: ir.Value, scales: tuple[ir.Value, ir.Value, ir.Value], y_point: ir.Value
) -> ir.Value:
    """An integer product (held in float32) scaled by a_scale * b_scale / y_scale, then quantized."""
    a_scale, b_scale, y_scale = (b.op("Cast", [s], to=ir.DataType.FLOAT) for s in scales)
    multiplier = b.op("Div", [b.op("Mul", [a_scale, b_scale]), y_scale])
    one = b.const(np.array(1.0, np.float32))
    rescaled = b.op("Mul", [product, multiplier])
    return _quantized(b, rescaled, ir.DataType.FLOAT, one, y_point, y_point.dtype)


def qlinear_matmul_spelled_out(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "QLinearMatMul")
    if node is None:
        return "not a QLinearMatMul node"
    a, a_scale, a_point, b_in, b_scale, b_point, y_scale, y_point = node.inputs
    if any(
        v.shape is None or not v.shape.is_static() or np.prod(v.shape.numpy()) != 1
        for v in (a_scale, b_scale, y_scale)
    ):
        return "per-axis scales (only per-tensor ones are spelled out)"
    if y_point.dtype not in _INTEGERS or a_scale.dtype is None:
        return "a non-integer or unknown output type"
    b = Emitter(model, node)
    centered = [
        b.op("Sub", [b.op("Cast", [v], to=ir.DataType.INT32), b.op("Cast", [p], to=ir.DataType.INT32)])
        for v, p in ((a, a_point), (b_in, b_point))
    ]
    product = b.op("Cast", [b.op("MatMul", centered)], to=ir.DataType.FLOAT)
    b.replace([_requantized(b, product, (a_scale, b_scale, y_scale), y_point)])
    return None


_ROUND_SINCE = 11  # Round, and Clip with bounds as inputs
_CONV_ATTRIBUTES = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
_EXACT_TAPS = 256  # 255 * 255 * 256 < 2**24: the float32 sums of 8-bit products stay exact


def _centered(b: Emitter, value: ir.Value, point: ir.Value | None) -> ir.Value:
    """value - zero_point in float32 (the point broadcasting as given)."""
    as_float = b.op("Cast", [value], to=ir.DataType.FLOAT)
    return as_float if point is None else b.op("Sub", [as_float, b.op("Cast", [point], to=ir.DataType.FLOAT)])


def _centered_weights(w: ir.Value, point: ir.Value | None) -> np.ndarray | None:
    """w - w_zero_point as integers (the zero point per tensor or per output channel), if constant."""
    weights = ir.convenience.get_const_tensor(w)
    offset = None if point is None else ir.convenience.get_const_tensor(point)
    if weights is None or (point is not None and offset is None):
        return None
    values = weights.numpy().astype(np.int32)
    if offset is None:
        return values
    return values - offset.numpy().astype(np.int32).reshape(-1, *([1] * (values.ndim - 1)))


def _slice_width(widest: int, channels: int, shape: ir.Shape | None) -> int:
    """The widest slice of input channels, up to `widest`, whose width and remainder differ from
    the input's spatial dims: onnx2tf tells layouts apart by dims, and a 28-channel slice of a
    28x28 activation came back transposed into its Conv."""
    spatial = {d for d in (shape or [])[2:] if isinstance(d, int)}
    for width in range(widest, 0, -1):
        if width not in spatial and channels % width not in spatial:
            return width
    return widest


def _summed_in_slices(
    b: Emitter, x: ir.Value, w: np.ndarray, bias: np.ndarray | None, per_slice: int, **attributes
) -> ir.Value:
    """The Conv of centered integers over more than 256 taps: one float32 Conv per slice of at most
    `per_slice` input channels (each exact), their sums added in int32 with the int32 bias, then cast
    to float32 as onnxruntime casts its int32 accumulator before rescaling. The centered weights and
    the bias are constants, sliced and shaped here (onnx2tf fails on a model output it folded itself)."""
    total = None
    channels = w.shape[1]
    for start in range(0, channels, per_slice):
        stop = min(start + per_slice, channels)
        part_x = b.op("Slice", [x, b.ints([start]), b.ints([stop]), b.ints([1])])
        part = b.op("Conv", [part_x, b.const(w[:, start:stop].astype(np.float32))], **attributes)
        part = b.op("Cast", [part], to=ir.DataType.INT32)
        total = part if total is None else b.op("Add", [total, part])
    if bias is not None:
        shaped = bias.astype(np.int32).reshape(1, -1, *([1] * (w.ndim - 2)))
        total = b.op("Add", [total, b.const(shaped)])
    return b.op("Cast", [total], to=ir.DataType.FLOAT)


def qlinear_conv_spelled_out(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    if standard_node(model, finding, "QLinearConv") is None:
        return "not a QLinearConv node"
    if default_opset(model) < _ROUND_SINCE and (reason := upgrade_opset(model, _ROUND_SINCE)):
        return reason
    node = standard_node(model, finding, "QLinearConv")
    if node is None:
        return f"the node is lost moving the model to opset {_ROUND_SINCE}"
    x, x_scale, x_point, w, w_scale, w_point, y_scale, y_point = node.inputs[:8]
    bias = node.inputs[8] if len(node.inputs) > 8 else None
    x_type = x.dtype or (x_point.dtype if x_point is not None else None)  # x's is the zero point's
    if y_point is None or y_point.dtype not in _INTEGERS or x_type not in _INTEGERS:
        return "a non-integer or unknown input or output type"
    if w.shape is None or not w.shape.is_static():
        return "the weight's shape is not static"
    if x_type.itemsize > 1 or int(np.prod(w.shape.numpy()[2:])) > _EXACT_TAPS:
        return f"16-bit inputs or a kernel window of more than {_EXACT_TAPS} taps: float32 sums would round"
    bias_tensor = None if bias is None else ir.convenience.get_const_tensor(bias)
    if bias is not None and (bias_tensor is None or np.abs(bias_tensor.numpy()).max() >= 2**23):
        return "a run-time bias, or one of 2**23 or more: float32 sums would round"
    if x_point is not None and (x_point.shape is None or np.prod(x_point.shape.numpy()) != 1):
        return "a per-channel input zero point"
    if w_point is not None and w_point.shape is None:
        return "the weight zero point's shape is unknown"
    area, in_channels, rank = int(np.prod(w.shape.numpy()[2:])), int(w.shape[1]), len(w.shape)  # x's
    sliced = in_channels * area > _EXACT_TAPS
    weights = _centered_weights(w, w_point)
    if sliced and (node.attributes.get_int("group", 1) != 1 or weights is None):
        return f"more than {_EXACT_TAPS} taps per output of a grouped or run-time-weight Conv"
    b = Emitter(model, node)
    x_centered = _centered(b, x, x_point)
    attributes = {name: node.attributes[name].value for name in _CONV_ATTRIBUTES if name in node.attributes}
    if sliced:
        bias_values = None if bias_tensor is None else bias_tensor.numpy()
        per_slice = _slice_width(max(1, _EXACT_TAPS // area), in_channels, x.shape)
        product = _summed_in_slices(b, x_centered, weights, bias_values, per_slice, **attributes)
    else:
        if weights is not None:  # a constant: onnx2tf lays a computed 4-D weight out as an activation
            w_centered = b.const(weights.astype(np.float32))
        else:
            per_channel = w_point is not None and np.prod(w_point.shape.numpy()) != 1
            w_centered = _centered(b, w, _per_axis(b, w_point, 0, rank) if per_channel else w_point)
        biased = [] if bias is None else [b.op("Cast", [bias], to=ir.DataType.FLOAT)]
        product = b.op("Conv", [x_centered, w_centered, *biased], **attributes)
    scales = (x_scale, _per_axis(b, w_scale, 1, rank), y_scale)
    b.replace([_requantized(b, product, scales, y_point)])
    return None


class DynamicQuantizeLinearSpelledOut(orp.RewriteRuleClassBase):
    """DynamicQuantizeLinear as its ONNX function body with the QuantizeLinear spelled out (onnx2tf's
    returns the dequantized floats, and its rounding moved a BERT's int8 products by whole steps).
    The range is taken over the flattened tensor: onnx2tf's own onnxruntime run of the model, which
    its layout corrections need, gave an axes-less ReduceMax over a rank-3 tensor a shape of [16] and
    failed, and an encoder's attention heads then came out transposed."""

    def pattern(self, op, x):
        return op.DynamicQuantizeLinear(x, _outputs=["y", "y_scale", "y_zero_point"])

    def check(self, context, x, **_) -> orp.MatchResult:
        float32 = x.dtype == ir.DataType.FLOAT
        return orp.MatchResult() if float32 else orp.MatchResult().fail("x is not float32")

    def rewrite(self, op, x, **_):
        low, high = (op.Constant(value=ir.tensor(np.array(v, np.float32))) for v in (0.0, 255.0))
        flat = op.Reshape(x, op.Constant(value=ir.tensor(np.array([-1], np.int64))))
        x_min = op.Min(op.ReduceMin(flat, keepdims=0), low)
        x_max = op.Max(op.ReduceMax(flat, keepdims=0), low)
        scale = op.Div(op.Sub(x_max, x_min), high)
        zero = op.Round(op.Clip(op.Sub(low, op.Div(x_min, scale)), low, high))
        quantized = op.Clip(op.Add(op.Round(op.Div(x, scale)), zero), low, high)
        uint8 = ir.DataType.UINT8.value
        return op.Cast(quantized, to=uint8), scale, op.Cast(zero, to=uint8)


_KINDS = ("conversion-error", "divergence")
RULES = [
    from_rewrite_rules(
        "dynamic-quantize-linear-spelled-out",
        _KINDS,
        ("DynamicQuantizeLinear",),
        [DynamicQuantizeLinearSpelledOut().rule()],
        "DynamicQuantizeLinear (onnx2tf returns the dequantized float) as its function body, spelled out",
    ),
    Rule(
        "quantize-linear-spelled-out",
        _KINDS,
        quantize_linear_spelled_out,
        "QuantizeLinear (onnx2tf returns the dequantized float) as Div, Round, Add, Clip and Cast",
        ops=("QuantizeLinear",),
    ),
    Rule(
        "dequantize-linear-spelled-out",
        _KINDS,
        dequantize_linear_spelled_out,
        "DequantizeLinear as (Cast(x) - zero_point) * scale, per-axis scales reshaped along the axis",
        ops=("DequantizeLinear",),
    ),
    Rule(
        "qlinear-matmul-spelled-out",
        _KINDS,
        qlinear_matmul_spelled_out,
        "QLinearMatMul as an int32 MatMul of the centered inputs, rescaled and quantized",
        ops=("QLinearMatMul",),
    ),
    Rule(
        "qlinear-conv-spelled-out",
        _KINDS,
        qlinear_conv_spelled_out,
        "QLinearConv as a float Conv of the centered integers plus bias, rescaled and quantized",
        ops=("QLinearConv",),
    ),
]
