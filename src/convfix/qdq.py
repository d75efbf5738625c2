"""A QDQ model's own quantization, for its int8 TFLite file (`--quantize int8`).

A model exported with its quantization (PyTorch fake-quant or PT2E, onnxruntime's quantize_static in
QDQ format) says, at each QuantizeLinear -> DequantizeLinear pair, the scale and zero point an int8
deployment must use. Its int8 file is converted from the model with its weights' DequantizeLinear
folded into float constants (TFLite quantizes weights itself: per channel, symmetric, as such models
do) and its activation pairs kept, which the worker turns into fake-quant ops (fake_quant.py); TFLite
then takes their ranges instead of calibrating. Here: the scales the model carries, the quantization
step of each output (parity is one step), and whether the file kept the model's scales.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix import model_io

RELATIVE_SCALE_TOLERANCE = 1e-6  # a scale read back from the file: float32, recomputed from the range


@dataclass(frozen=True)
class OwnScale:
    """One activation's quantization as the model carries it (zero point as int8: uint8 less 128)."""

    name: str
    scale: float
    zero_point: int


def _constant(value: ir.Value | None) -> np.ndarray | None:
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


def fake_quant_source(model: ir.Model) -> ir.Model:
    """The model with every DequantizeLinear of a constant (its weights, biases) folded into a float
    constant; the activations' pairs stay for the worker to make fake-quant ops of."""
    source = model_io.clone(model)
    graph = source.graph
    for node in list(graph):
        if node.op_type != "DequantizeLinear" or node.attributes.get_int("block_size", 0):
            continue
        integers = _constant(node.inputs[0])
        scale = _constant(node.inputs[1])
        zero = _constant(node.inputs[2] if len(node.inputs) > 2 else None)
        if integers is None or scale is None:
            continue
        if scale.size > 1:
            shape = [1] * integers.ndim
            shape[node.attributes.get_int("axis", 1) % integers.ndim] = -1
            scale = scale.reshape(shape)
            zero = None if zero is None else zero.reshape(shape)
        centered = integers.astype(np.float32) - (0 if zero is None else zero.astype(np.float32))
        weights = (centered * scale).astype(scale.dtype)
        constant = ir.node(
            "Constant", [], attributes={"value": ir.tensor(weights)}, name=f"{node.name}_folded"
        )
        constant.outputs[0].dtype, constant.outputs[0].shape = node.outputs[0].dtype, ir.Shape(weights.shape)
        graph.insert_before(node, constant)
        node.outputs[0].replace_all_uses_with(constant.outputs[0], replace_graph_outputs=True)
        graph.remove(node, safe=True)
    return source


def scales_kept(own: list[OwnScale], in_file: Mapping[str, tuple[float, int]]) -> tuple[list[str], list[str]]:
    """(the model's activations whose scale and zero point no computed int8 tensor of the file
    has, the file's computed int8 tensors whose scale and zero point are none of the model's)."""

    def same(a: tuple[float, int], b: tuple[float, int]) -> bool:
        return a[1] == b[1] and abs(a[0] - b[0]) <= RELATIVE_SCALE_TOLERANCE * abs(a[0])

    carried = [(s.scale, s.zero_point) for s in own]
    missing = [s.name for s in own if not any(same((s.scale, s.zero_point), f) for f in in_file.values())]
    foreign = [name for name, f in in_file.items() if not any(same(c, f) for c in carried)]
    return missing, foreign
