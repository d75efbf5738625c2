"""Integer products the oracle computes exactly on every x86 CPU.

onnxruntime's default kernel for a uint8 x int8 product (U8S8) adds pairs of products in a saturating
16-bit intermediate on x86 CPUs without VNNI (AVX2 only): a MatMulInteger is then off by thousands, so
the reference would depend on the machine it ran on. onnxruntime's own cure is its
Avx2WeightS8ToU8Transformer: the constant int8 weight w and its zero point z become w+128 and z+128 in
uint8, which computes the same product with the exact U8U8 kernel. That transformer runs only with the
extended graph optimizations, which also fuse and change what a model computes, so the oracle applies
the same rewrite itself, on the nodes that transformer names.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

_MS = "com.microsoft"

# (domain, op_type) -> (index of the weight, index of its zero point), as onnxruntime's transformer
# lists them (onnxruntime/core/optimizer/qdq_transformer/avx2_weight_s8_to_u8.cc).
_WEIGHT_INPUTS: dict[tuple[str, str], tuple[int, int]] = {
    ("", "MatMulInteger"): (1, 3),
    ("", "QLinearMatMul"): (3, 5),
    ("", "QLinearConv"): (3, 5),
    (_MS, "QGemm"): (3, 5),
    (_MS, "QAttention"): (1, 7),
    (_MS, "MatMulIntegerToFloat"): (1, 5),
    (_MS, "DynamicQuantizeMatMul"): (1, 3),
}

OPERATORS = frozenset(op for _, op in _WEIGHT_INPUTS)


def with_unsigned_weights(model: onnx.ModelProto) -> onnx.ModelProto | None:
    """A copy of the model whose constant int8 weights of integer products (main graph) are shifted
    to uint8, or None when it has none: the model then runs as it is."""
    initializers = {t.name: t for t in model.graph.initializer}
    shiftable = [i for i, node in enumerate(model.graph.node) if _shiftable(node, initializers)]
    if not shiftable:
        return None
    shifted = onnx.ModelProto()
    shifted.CopyFrom(model)
    made: dict[str, str] = {}
    for index in shiftable:
        node = shifted.graph.node[index]
        weight, zero_point = _WEIGHT_INPUTS[(node.domain or "", node.op_type)]
        zero_name = node.input[zero_point] if len(node.input) > zero_point else ""
        node.input[weight] = _as_uint8(shifted, initializers, node.input[weight], made)
        node.input.extend([""] * (zero_point + 1 - len(node.input)))
        node.input[zero_point] = _as_uint8(shifted, initializers, zero_name, made)
    return shifted


def _shiftable(node: onnx.NodeProto, initializers: dict[str, TensorProto]) -> bool:
    """Its weight is a constant int8 tensor and so is its zero point, if it has one."""
    indices = _WEIGHT_INPUTS.get((node.domain or "", node.op_type))
    if indices is None or len(node.input) <= indices[0]:
        return False
    names = [node.input[i] for i in indices if i < len(node.input) and node.input[i]]
    return all(name in initializers and initializers[name].data_type == TensorProto.INT8 for name in names)


def _as_uint8(
    model: onnx.ModelProto, initializers: dict[str, TensorProto], name: str, made: dict[str, str]
) -> str:
    """The name of a new initializer holding `name` + 128 as uint8 (an absent zero point is 0)."""
    if name in made:
        return made[name]
    values = numpy_helper.to_array(initializers[name]) if name else np.array(0, np.int8)
    made[name] = new_name = f"{name or 'zero_point'}__as_uint8_{len(made)}"
    model.graph.initializer.append(
        numpy_helper.from_array((values.astype(np.int16) + 128).astype(np.uint8), new_name)
    )
    return new_name
