"""A QDQ model's own quantization, for its int8 TFLite file (`--quantize int8`).

A model exported with its quantization (PyTorch fake-quant or PT2E, onnxruntime's quantize_static in
QDQ format) says, at each QuantizeLinear -> DequantizeLinear pair, the scale and zero point an int8
deployment must use. Its int8 file is converted from the model with its weights' DequantizeLinear
folded into float constants and its activation pairs kept, which the worker turns into fake-quant
ops (fake_quant.py); TFLite then takes their ranges instead of calibrating. TFLite quantizes the
weights itself, so the model's own int8 weights are written into the file afterwards
(backends/onnx2tf/own_weights.py). Here: the scales the model carries, the quantization
step of each output (parity is one step), and whether the file kept the model's scales.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnx_ir.passes import common

from convfix import int8_source, model_io
from convfix.backends.base import OwnWeight

# The ops of the model's quantization pairs: rewrites of them are not replayed on the own-scales source
PAIR_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
RELATIVE_SCALE_TOLERANCE = 1e-6  # a scale read back from the file: float32, recomputed from the range


@dataclass(frozen=True)
class OwnScale:
    """One activation's quantization as the model carries it (zero point as int8: uint8 less 128)."""

    name: str
    scale: float
    zero_point: int


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """A constant's value, through Identity nodes (TorchScript shares a zero point through them)."""
    while value is not None and value.producer() is not None and value.producer().op_type == "Identity":
        value = value.producer().inputs[0]
    tensor = None if value is None else ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _per_tensor(node: ir.Node) -> tuple[float, int] | None:
    """A QuantizeLinear's or DequantizeLinear's constant per-tensor 8-bit (scale, int8 zero point)."""
    scale = _constant(node.inputs[1] if len(node.inputs) > 1 else None)
    zero = _constant(node.inputs[2] if len(node.inputs) > 2 else None)
    if scale is None or scale.size != 1 or (zero is not None and zero.size != 1):
        return None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    if dtype not in (np.uint8, np.int8):
        return None
    point = 0 if zero is None else int(zero.reshape(()))
    return float(scale.reshape(())), point - 128 if dtype == np.uint8 else point


def own_scales(model: ir.Model) -> list[OwnScale]:
    """The activation scales the model carries: per-tensor QuantizeLinear nodes of the main graph
    whose every consumer is a DequantizeLinear."""
    scales = []
    for node in model.graph:
        if node.op_type != "QuantizeLinear" or node.domain not in ("", "ai.onnx"):
            continue
        if _constant(node.inputs[0]) is not None:  # a weight fake-quantized (PyTorch QAT), not an activation
            continue
        quantization = _per_tensor(node)
        consumers = [use.node.op_type for use in node.outputs[0].uses()]
        if quantization and consumers and all(op == "DequantizeLinear" for op in consumers):
            scales.append(OwnScale(node.outputs[0].name, *quantization))
    return scales


def output_steps(model: ir.Model) -> dict[str, float]:
    """The quantization step of each graph output a per-tensor DequantizeLinear makes."""
    steps = {}
    for value in model.graph.outputs:
        producer = value.producer()
        if producer is not None and producer.op_type == "DequantizeLinear":
            quantization = _per_tensor(producer)
            if quantization:
                steps[value.name] = quantization[0]
    return steps


def _along_axis(node: ir.Node, values: np.ndarray | None, rank: int) -> np.ndarray | None:
    """A per-axis scale or zero point shaped to broadcast along the node's axis."""
    if values is None or values.size == 1:
        return values
    shape = [1] * rank
    shape[node.attributes.get_int("axis", 1) % rank] = -1
    return values.reshape(shape)


def _integers(value: ir.Value) -> np.ndarray | None:
    """A DequantizeLinear's input as constant integers: stored so (an exported int8 weight), or
    a QuantizeLinear of a constant (a weight fake-quantized by PyTorch's QAT)."""
    stored = _constant(value)
    if stored is not None:
        return stored
    producer = value.producer()
    if (
        producer is None
        or producer.op_type != "QuantizeLinear"
        or producer.attributes.get_int("block_size", 0)
    ):
        return None
    weights, scale = _constant(producer.inputs[0]), _constant(producer.inputs[1])
    zero = (
        _constant(producer.inputs[2]) if len(producer.inputs) > 2 and producer.inputs[2] is not None else None
    )
    if weights is None or scale is None:
        return None
    dtype = np.dtype(np.uint8) if zero is None else zero.dtype
    if dtype not in (np.uint8, np.int8):
        return None
    info = np.iinfo(dtype)
    scale, zero = _along_axis(producer, scale, weights.ndim), _along_axis(producer, zero, weights.ndim)
    shifted = np.rint(weights / scale) + (0 if zero is None else zero.astype(np.float64))
    return np.clip(shifted, info.min, info.max).astype(dtype)


def own_weights(model: ir.Model) -> list[OwnWeight]:
    """The int8 weights the model carries (zero point 0, per tensor or per axis): each
    DequantizeLinear of constant integers of rank 2 or more, stored so or fake-quantized."""
    weights = []
    for node in model.graph:
        if node.op_type != "DequantizeLinear" or node.attributes.get_int("block_size", 0):
            continue
        integers = _integers(node.inputs[0])
        scale = _constant(node.inputs[1])
        zero = _constant(node.inputs[2] if len(node.inputs) > 2 else None)
        if integers is None or scale is None or integers.dtype != np.int8 or integers.ndim < 2:
            continue
        if zero is not None and zero.any():
            continue
        axis = node.attributes.get_int("axis", 1) % integers.ndim
        if scale.size not in (1, integers.shape[axis]):
            continue
        weights.append(OwnWeight(node.inputs[0].name, integers, scale.astype(np.float32).reshape(-1), axis))
    return weights


def fake_quant_source(model: ir.Model) -> ir.Model:
    """The model with its weights folded (fold_weights); the activations' pairs stay for the worker
    to make fake-quant ops of. Then prepared as any int8 source (int8_source.py)."""
    source = fold_weights(model)
    relu_before_pairs(source.graph)
    common.RemoveUnusedNodesPass()(source)
    return int8_source.prepared(source)[0]


def fold_weights(model: ir.Model) -> ir.Model:
    """A copy of the model with every DequantizeLinear of constant integers (its weights, biases;
    stored as integers or fake-quantized from floats) folded into a float constant."""
    source = model_io.clone(model)
    graph = source.graph
    for node in list(graph):
        if node.op_type != "DequantizeLinear" or node.attributes.get_int("block_size", 0):
            continue
        integers = _integers(node.inputs[0])
        scale = _constant(node.inputs[1])
        zero = _constant(node.inputs[2] if len(node.inputs) > 2 else None)
        if integers is None or scale is None:
            continue
        scale, zero = _along_axis(node, scale, integers.ndim), _along_axis(node, zero, integers.ndim)
        centered = integers.astype(np.float32) - (0 if zero is None else zero.astype(np.float32))
        weights = (centered * scale).astype(scale.dtype)
        tensor = ir.tensor(weights)
        constant = ir.node("Constant", [], attributes={"value": tensor}, name=f"{node.name}_folded")
        constant.outputs[0].dtype, constant.outputs[0].shape = tensor.dtype, ir.Shape(weights.shape)
        graph.insert_before(node, constant)
        node.outputs[0].replace_all_uses_with(constant.outputs[0], replace_graph_outputs=True)
        graph.remove(node, safe=True)
    common.RemoveUnusedNodesPass()(source)
    return source


_GRID_KEEPING = frozenset(
    {"Relu", "MaxPool", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity"}
)
_AVERAGING = frozenset({"ReduceMean", "GlobalAveragePool", "AveragePool"})


def _dequantized_from(value: ir.Value) -> ir.Node | None:
    """The per-tensor DequantizeLinear whose grid `value` is on, through ops that keep values on it."""
    producer = value.producer()
    while producer is not None and producer.op_type in _GRID_KEEPING and producer.domain in ("", "ai.onnx"):
        producer = producer.inputs[0].producer()
    if producer is None or producer.op_type != "DequantizeLinear" or _per_tensor(producer) is None:
        return None
    return producer


def _weight_scale(node: ir.Node) -> np.ndarray | None:
    """The scale of a Conv's or Gemm's weight, per output channel (or one), where it is a
    DequantizeLinear of constant integers."""
    dequantize = node.inputs[1].producer() if len(node.inputs) > 1 else None
    if dequantize is None or dequantize.op_type != "DequantizeLinear":
        return None
    if _integers(dequantize.inputs[0]) is None:
        return None
    scale = _constant(dequantize.inputs[1])
    if scale is None or scale.size == 1:
        return scale
    across = 0 if node.op_type == "Conv" or node.attributes.get_int("transB", 0) else 1
    return scale if dequantize.attributes.get_int("axis", 1) == across else None


def _bias_in_int32(graph: ir.Graph, node: ir.Node) -> bool:
    """A float constant bias of a Conv or Gemm whose input and weight are quantized, replaced by
    its value on the int32 grid of input scale times weight scale; whether it was."""
    bias = _constant(node.inputs[2]) if len(node.inputs) > 2 else None
    dequantize = _dequantized_from(node.inputs[0])
    weight_scale = _weight_scale(node)
    if bias is None or dequantize is None or weight_scale is None or bias.dtype != np.float32:
        return False
    step = (_per_tensor(dequantize)[0] * weight_scale.astype(np.float64)).reshape(-1)
    info = np.iinfo(np.int32)
    on_grid = (np.clip(np.rint(bias / step), info.min, info.max) * step).astype(np.float32)
    value = ir.tensor(on_grid)
    constant = ir.node("Constant", [], attributes={"value": value}, name=f"{node.name}_bias_int32")
    constant.outputs[0].dtype, constant.outputs[0].shape = ir.DataType.FLOAT, ir.Shape(on_grid.shape)
    graph.insert_before(node, constant)
    node.replace_input_with(2, constant.outputs[0])
    return True


def _average_on_grid(graph: ir.Graph, node: ir.Node) -> bool:
    """An average's float output quantized on its input's grid; whether it was."""
    output = node.outputs[0]
    uses = list(output.uses())
    dequantize = _dequantized_from(node.inputs[0])
    quantized_next = all(use.node.op_type == "QuantizeLinear" for use in uses)
    if output.is_graph_output() or dequantize is None or quantized_next:
        return False
    pair = dequantize.inputs[1:3]
    quantize = ir.node("QuantizeLinear", [output, *pair], name=f"{node.name}_as_int8")
    restored = ir.node("DequantizeLinear", [quantize.outputs[0], *pair], name=f"{node.name}_on_grid")
    quantize.outputs[0].dtype = dequantize.inputs[0].dtype
    restored.outputs[0].dtype, restored.outputs[0].shape = output.dtype, output.shape
    graph.insert_after(node, [quantize, restored])
    for use in uses:
        use.node.replace_input_with(use.idx, restored.outputs[0])
    return True


def int8_reference(model: ir.Model) -> tuple[ir.Model, list[str]]:
    """The model as an int8 runtime computes it, and what that changes. What the model leaves in
    float between its quantized layers (PyTorch's eager fake-quant leaves a mean before the
    classifier, and every bias) is integer there too: an average on its input's scale, a bias in
    int32 on input scale times weight scale. TFLite does so, as do PyTorch's quantized mean and
    fbgemm's quantized conv; the float model and any int8 deployment of it differ by that rounding,
    which moves values next to a rounding boundary of the next layer across it."""
    completed = model_io.clone(model)
    graph = completed.graph
    changed = []
    for node in list(graph):
        if node.domain not in ("", "ai.onnx") or not node.outputs:
            continue
        if node.op_type in _AVERAGING and _average_on_grid(graph, node):
            changed.append(f"{node.op_type} {node.outputs[0].name} on its input's grid")
        elif node.op_type in ("Conv", "Gemm") and _bias_in_int32(graph, node):
            changed.append(f"bias of {node.op_type} {node.name} in int32")
    return completed, changed


def relu_before_pairs(graph: ir.Graph) -> None:
    """Q -> DQ -> Relu becomes Relu -> Q -> DQ (exact: both give 0 where x < 0 and the same step
    elsewhere). PyTorch's eager fake-quant without fused modules quantizes a Conv's output before its
    ReLU; TFLite fuses the two and would calibrate the fused output's range instead of the model's."""
    for relu in list(graph):
        dequantize = relu.inputs[0].producer() if relu.op_type == "Relu" else None
        if (
            dequantize is None
            or dequantize.op_type != "DequantizeLinear"
            or len(dequantize.outputs[0].uses()) != 1
        ):
            continue
        quantize = dequantize.inputs[0].producer()
        if quantize is None or quantize.op_type != "QuantizeLinear" or len(quantize.outputs[0].uses()) != 1:
            continue
        if _per_tensor(quantize) is None:
            continue
        activated = ir.node("Relu", [quantize.inputs[0]], name=f"{relu.name}_before_quantization")
        activated.outputs[0].dtype, activated.outputs[0].shape = relu.outputs[0].dtype, relu.outputs[0].shape
        graph.insert_before(quantize, activated)
        quantize.replace_input_with(0, activated.outputs[0])
        moved, kept = relu.outputs[0], dequantize.outputs[0]
        if moved.is_graph_output():  # the output keeps its name
            name = moved.name
            moved.name, kept.name = f"{name}_before_quantization", name
        moved.replace_all_uses_with(kept, replace_graph_outputs=True)
        graph.remove(relu, safe=True)


def scales_kept(own: list[OwnScale], in_file: Mapping[str, tuple[float, int]]) -> tuple[list[str], list[str]]:
    """(the model's activations whose scale and zero point no computed int8 tensor of the file
    has, the file's computed int8 tensors whose scale and zero point are none of the model's)."""

    def same(a: tuple[float, int], b: tuple[float, int]) -> bool:
        return a[1] == b[1] and abs(a[0] - b[0]) <= RELATIVE_SCALE_TOLERANCE * abs(a[0])

    carried = [(s.scale, s.zero_point) for s in own]
    missing = [s.name for s in own if not any(same((s.scale, s.zero_point), f) for f in in_file.values())]
    foreign = [name for name, f in in_file.items() if not any(same(c, f) for c in carried)]
    return missing, foreign
