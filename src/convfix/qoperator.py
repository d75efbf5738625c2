"""A QOperator-format model (onnxruntime's QLinear ops: QLinearConv, QLinearMatMul, and com.microsoft
QGemm, QLinearAdd, QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearSigmoid,
QLinearLeakyRelu, QLinearConcat) written in QDQ format, for the own-scales int8 file: each QLinear
op becomes DequantizeLinear of its inputs, the float op, and QuantizeLinear with its output scale and
zero point (the inverse of onnxruntime's QDQ-to-QOperator fusion), and each op that carries the
integers between them (MaxPool, Flatten, Reshape, ...) is wrapped in its input's DequantizeLinear
and QuantizeLinear, exact for those ops. The model's scales are then QuantizeLinear -> DequantizeLinear
pairs like any QDQ model's (qdq.own_scales). The float file is made from the QLinear ops spelled out
with onnxruntime's arithmetic (rewrites/quantization.py, rewrites/contrib_qlinear.py), not from this."""

from __future__ import annotations

from collections.abc import Callable

import onnx_ir as ir

from convfix import model_io

MS = "com.microsoft"
# ops whose output is their input's integers moved or selected: wrapped in DQ/Q with the input's scale
_CARRIERS = frozenset({"MaxPool", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Identity"})


def _dq(
    graph: ir.Graph, x: ir.Value, scale: ir.Value, zero: ir.Value | None, axis: int | None = None
) -> ir.Value:
    attributes = {} if axis is None else {"axis": axis}
    inputs = [x, scale, *([zero] if zero is not None else [])]
    node = ir.node("DequantizeLinear", inputs, attributes=attributes)
    graph.append(node)
    return node.outputs[0]


def _q(graph: ir.Graph, y: ir.Value, scale: ir.Value, zero: ir.Value) -> ir.Value:
    node = ir.node("QuantizeLinear", [y, scale, zero])
    graph.append(node)
    return node.outputs[0]


def _float_op(graph: ir.Graph, op_type: str, inputs: list, attributes: dict) -> ir.Value:
    node = ir.node(op_type, inputs, attributes=attributes)
    graph.append(node)
    return node.outputs[0]


def _bias(graph: ir.Graph, bias: ir.Value | None, x_scale: ir.Value, w_scale: ir.Value):
    """An int32 bias as float: DequantizeLinear with x_scale * w_scale (per output channel)."""
    if bias is None:
        return None
    scale = _float_op(graph, "Mul", [x_scale, w_scale], {})
    return _dq(graph, bias, scale, None, axis=0)


def _attributes(node: ir.Node, names: tuple[str, ...]) -> dict:
    return {name: node.attributes[name].value for name in names if name in node.attributes}


def _conv(graph: ir.Graph, node: ir.Node) -> ir.Value:
    x, xs, xz, w, ws, wz, ys, yz = node.inputs[:8]
    bias = node.inputs[8] if len(node.inputs) > 8 else None
    inputs = [_dq(graph, x, xs, xz), _dq(graph, w, ws, wz, axis=0)]
    if bias is not None:
        inputs.append(_bias(graph, bias, xs, ws))
    names = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")
    return _q(graph, _float_op(graph, "Conv", inputs, _attributes(node, names)), ys, yz)


def _matmul(graph: ir.Graph, node: ir.Node) -> ir.Value:
    a, a_s, a_z, b, b_s, b_z, ys, yz = node.inputs[:8]
    product = _float_op(graph, "MatMul", [_dq(graph, a, a_s, a_z), _dq(graph, b, b_s, b_z, axis=-1)], {})
    return _q(graph, product, ys, yz)


def _gemm(graph: ir.Graph, node: ir.Node) -> ir.Value | None:
    a, a_s, a_z, b, b_s, b_z = node.inputs[:6]
    bias = node.inputs[6] if len(node.inputs) > 6 else None
    ys = node.inputs[7] if len(node.inputs) > 7 else None
    yz = node.inputs[8] if len(node.inputs) > 8 else None
    if ys is None:
        return None
    trans_b = node.attributes.get_int("transB", 0)
    inputs = [_dq(graph, a, a_s, a_z), _dq(graph, b, b_s, b_z, axis=0 if trans_b else 1)]
    if bias is not None:
        inputs.append(_bias(graph, bias, a_s, b_s))
    gemm = _float_op(graph, "Gemm", inputs, _attributes(node, ("alpha", "transA", "transB")))
    return _q(graph, gemm, ys, yz)


def _binary(op_type: str) -> Callable[[ir.Graph, ir.Node], ir.Value]:
    def convert(graph: ir.Graph, node: ir.Node) -> ir.Value:
        a, a_s, a_z, b, b_s, b_z, ys, yz = node.inputs[:8]
        result = _float_op(graph, op_type, [_dq(graph, a, a_s, a_z), _dq(graph, b, b_s, b_z)], {})
        return _q(graph, result, ys, yz)

    return convert


def _unary(op_type: str, names: tuple[str, ...] = ()) -> Callable[[ir.Graph, ir.Node], ir.Value]:
    def convert(graph: ir.Graph, node: ir.Node) -> ir.Value:
        x, xs, xz, ys, yz = node.inputs[:5]
        result = _float_op(graph, op_type, [_dq(graph, x, xs, xz)], _attributes(node, names))
        return _q(graph, result, ys, yz)

    return convert


def _concat(graph: ir.Graph, node: ir.Node) -> ir.Value:
    ys, yz, *rest = node.inputs
    parts = [_dq(graph, *rest[i : i + 3]) for i in range(0, len(rest), 3)]
    return _q(graph, _float_op(graph, "Concat", parts, _attributes(node, ("axis",))), ys, yz)


_POOL = ("auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")
_CONVERTERS: dict[tuple[str, str], Callable[[ir.Graph, ir.Node], ir.Value | None]] = {
    ("", "QLinearConv"): _conv,
    ("", "QLinearMatMul"): _matmul,
    (MS, "QGemm"): _gemm,
    (MS, "QLinearAdd"): _binary("Add"),
    (MS, "QLinearMul"): _binary("Mul"),
    (MS, "QLinearGlobalAveragePool"): _unary("GlobalAveragePool"),
    (MS, "QLinearAveragePool"): _unary("AveragePool", _POOL),
    (MS, "QLinearSigmoid"): _unary("Sigmoid"),
    (MS, "QLinearLeakyRelu"): _unary("LeakyRelu", ("alpha",)),
    (MS, "QLinearConcat"): _concat,
}


def _key(node: ir.Node) -> tuple[str, str]:
    return ("" if node.domain in ("", "ai.onnx") else node.domain, node.op_type)


def holds_qlinear_ops(model: ir.Model) -> bool:
    return any(_key(node) in _CONVERTERS for node in model.graph)


def _quantization_of(value: ir.Value) -> tuple[ir.Value, ir.Value] | None:
    """The scale and zero point an integer value was written with: its producer's output ones."""
    producer = value.producer()
    if producer is None:
        return None
    if producer.op_type == "QuantizeLinear":
        return producer.inputs[1], producer.inputs[2]
    if producer.op_type in _CARRIERS:
        return _quantization_of(producer.inputs[0])
    return None


def as_qdq(model: ir.Model) -> ir.Model | None:
    """The model in QDQ format, or None if one of its QLinear ops has no QDQ form here (a QGemm with
    a float output) or an integer carrier's quantization cannot be traced to a QuantizeLinear."""
    converted = model_io.clone(model)
    graph = converted.graph
    for node in list(graph):
        convert = _CONVERTERS.get(_key(node))
        if convert is None:
            continue
        result = convert(graph, node)
        if result is None:
            return None
        if node.outputs[0].dtype is not None:
            result.dtype, result.shape = node.outputs[0].dtype, node.outputs[0].shape
        node.outputs[0].replace_all_uses_with(result, replace_graph_outputs=True)
        graph.remove(node, safe=True)
    for node in list(graph):
        if node.op_type not in _CARRIERS or node.inputs[0].dtype not in (ir.DataType.UINT8, ir.DataType.INT8):
            continue
        quantization = _quantization_of(node.inputs[0])
        if quantization is None:
            return None
        scale, zero = quantization
        integers = node.inputs[0].dtype
        node.replace_input_with(0, _dq(graph, node.inputs[0], scale, zero))
        node.outputs[0].type = ir.TensorType(ir.DataType.FLOAT)  # a new type: clones share theirs
        after = _q(graph, node.outputs[0], scale, zero)
        after.dtype, after.shape = integers, node.outputs[0].shape
        for user, index in list(node.outputs[0].uses()):
            if user is not after.producer():
                user.replace_input_with(index, after)
        if node.outputs[0].is_graph_output():
            return None
    graph.sort()
    return converted
