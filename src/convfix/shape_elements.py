"""Static elements of run-time shape tensors, folded to constants before the optimizer runs.

TorchScript exports read dims one at a time (`x.size(3)`: Gather of Shape(x) at a scalar index), and
convfix's own shape-from-inputs writes shapes as Concats of Shape slices and constants. Where the dim
read is static (a LLaMA head's 16 beside a dynamic batch and sequence), the value is a constant, but
onnxscript's optimizer folds a Gather from a shape only at a 1-D index, so the scalar read and
everything computed from it (the rotary half `head_dim // 2`, and the Slices it bounds) stay run-time
values; onnx2tf then knows no dim of the sliced tensors and guesses their layout. Exact: an element
is folded only where the model itself fixes it (a constant, or a static dim of the tensor measured).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

_MAX_DEPTH = 8


def _element(value: ir.Value, index: int, depth: int = 0) -> int | None:
    """Element `index` of the 1-D int64 tensor `value`, where the model fixes it; None otherwise."""
    if depth > _MAX_DEPTH:
        return None
    constant = ir.convenience.get_const_tensor(value)
    if constant is not None:
        array = constant.numpy().reshape(-1)
        return int(array[index]) if -array.size <= index < array.size else None
    node = value.producer()
    if node is None or node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Shape":
        return _dim(node, index)
    if node.op_type == "Concat" and node.attributes.get_int("axis", 0) == 0 and index >= 0:
        offset = 0
        for piece in node.inputs:
            shape = None if piece is None else piece.shape
            length = shape[0] if shape is not None and len(shape) == 1 else None
            if not isinstance(length, int):
                return None
            if index < offset + length:
                return _element(piece, index - offset, depth + 1)
            offset += length
    if node.op_type == "Identity":
        return _element(node.inputs[0], index, depth + 1)
    return None


def _dim(shape_node: ir.Node, index: int) -> int | None:
    """Element `index` of a Shape node's output: the measured tensor's dim, where it is static."""
    measured = shape_node.inputs[0].shape
    if measured is None:
        return None
    rank = len(measured)
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", rank)
    start, end = (min(max(b + rank if b < 0 else b, 0), rank) for b in (start, end))
    dims = list(measured)[start:end]
    dim = dims[index] if -len(dims) <= index < len(dims) else None
    return dim if isinstance(dim, int) else None


def fold(model: ir.Model) -> int:
    """Replace every Gather of static shape elements in the main graph by a constant; how many."""
    folded = 0
    for node in list(model.graph):
        if (
            node.op_type != "Gather"
            or node.domain not in ("", "ai.onnx")
            or node.attributes.get_int("axis", 0)
        ):
            continue
        data, indices = node.inputs
        index = ir.convenience.get_const_tensor(indices)
        if data.dtype != ir.DataType.INT64 or data.shape is None or len(data.shape) != 1 or index is None:
            continue
        if node.outputs[0].is_graph_output():
            continue
        wanted = index.numpy().astype(np.int64)
        length = data.shape[0]
        if isinstance(length, int):
            wanted = np.where(wanted < 0, wanted + length, wanted)
        elements = [_element(data, int(i)) for i in wanted.reshape(-1)]
        if any(e is None for e in elements):
            continue
        value = ir.tensor(np.array(elements, np.int64).reshape(wanted.shape))
        constant = ir.node("Constant", [], {"value": value}, name=f"{node.name}_folded")
        model.graph.insert_before(node, constant)
        node.outputs[0].replace_all_uses_with(constant.outputs[0])
        model.graph.remove(node, safe=True)
        folded += 1
    return folded
