"""MaxPool's indices and MaxUnpool, which consumes them, in forms onnx2tf converts.

Both use the flat index of an element in the whole N x C x spatial tensor (ONNX's convention).
- MaxPool with storage_order=1 (column-major indices): onnx2tf refuses it ("storage_order option is
  not implemented yet"). The pool runs row-major and the index is respelled: with r the row-major
  offset inside one (n, c) plane of an H x W input, h = r // W, w = r % W, and the column-major
  offset is w * H + h. 2-D pools only. Exact. (onnx2tf's own row-major indices are right only for
  one image of one channel without pads: it flattens them channels-last. Parity catches the rest.)
- MaxUnpool: onnx2tf computes another shape (seen: (1, 2, 4, 2) for (1, 1, 4, 4)). The output is a
  flat zero tensor with X scattered at the indices (ScatterElements), reshaped to the output shape
  (in - 1) * stride - pads + kernel per spatial dim; static shapes only. An `output_shape` input
  other than that shape is refused: onnxruntime scatters the indices into it, the ONNX reference
  (and the suite) pads the default output to it. Exact (indices the pool did not produce, such as
  duplicates, are undefined in ONNX too).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, constant_input_ints, int_list, standard_node
from convfix.rules import Rule, RuleContext


def column_major_indices(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "MaxPool")
    if node is None or node.attributes.get_int("storage_order", 0) != 1:
        return "not a MaxPool with storage_order=1"
    unused = len(node.outputs) < 2 or not (node.outputs[1].uses() or node.outputs[1].is_graph_output())
    if unused:
        node.attributes.pop("storage_order")
        return None
    x = node.inputs[0]
    if x.shape is None or len(x.shape) != 4 or not all(isinstance(d, int) for d in x.shape[2:]):
        return "not a 2-D pool over static spatial dims"
    height, width = x.shape[2], x.shape[3]
    node.attributes.pop("storage_order")
    indices = node.outputs[1]
    b = Emitter(model, node)
    plane = b.ints([height * width])
    offset = b.op("Mod", [indices, plane])
    base = b.op("Sub", [indices, offset])
    h = b.op("Div", [offset, b.ints([width])])
    w = b.op("Mod", [offset, b.ints([width])])
    column = b.op("Add", [base, b.op("Add", [b.op("Mul", [w, b.ints([height])]), h])])
    users = [(user, i) for user, i in indices.uses() if user not in b.tape.nodes]
    node.graph.insert_after(node, b.tape.nodes)
    for user, i in users:
        user.replace_input_with(i, column)
    if indices.is_graph_output():
        graph = node.graph
        column.name, indices.name = indices.name, f"{indices.name}__row_major"
        graph.outputs[graph.outputs.index(indices)] = column
        column.dtype, column.shape = indices.dtype, indices.shape
    return None


def _default_shape(node: ir.Node, x: ir.Value) -> list[int] | None:
    """MaxUnpool's output shape without output_shape: (in - 1) * stride - pads + kernel per dim."""
    if x.shape is None or not all(isinstance(d, int) for d in x.shape):
        return None
    spatial = len(x.shape) - 2
    kernel = int_list(node, "kernel_shape", 1, spatial)
    strides = int_list(node, "strides", 1, spatial)
    pads = int_list(node, "pads", 0, 2 * spatial)
    before, after = pads[:spatial], pads[spatial:]
    dims = [(x.shape[2 + i] - 1) * strides[i] - before[i] - after[i] + kernel[i] for i in range(spatial)]
    return [x.shape[0], x.shape[1], *dims]


def maxunpool_as_scatter(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "MaxUnpool")
    if node is None:
        return "not a MaxUnpool node"
    x, indices = node.inputs[:2]
    shape = _default_shape(node, x)
    if shape is None:
        return "the input's shape is not static"
    if len(node.inputs) > 2 and node.inputs[2] is not None and constant_input_ints(node, 2) != shape:
        return (
            "an output_shape other than the default: onnxruntime scatters the indices into it, the ONNX "
            "reference pads the default output to it; the two runtimes disagree"
        )
    b = Emitter(model, node)
    zeros = b.const(np.zeros(int(np.prod(shape)), x.dtype.numpy()))
    flat = b.ints([-1])
    scattered = b.op(
        "ScatterElements",
        [zeros, b.op("Reshape", [indices, flat]), b.op("Reshape", [x, flat])],
        axis=0,
    )
    b.replace([b.op("Reshape", [scattered, b.ints(shape)])])
    return None


_KINDS = ("conversion-error", "divergence")
RULES = [
    Rule(
        "maxpool-column-major-indices",
        _KINDS,
        column_major_indices,
        "MaxPool with storage_order=1 as a row-major MaxPool whose indices are respelled column-major",
        ops=("MaxPool",),
    ),
    Rule(
        "maxunpool-as-scatter",
        _KINDS,
        maxunpool_as_scatter,
        "MaxUnpool as X scattered at its flat indices into zeros, reshaped to the output shape",
        ops=("MaxUnpool",),
    ),
]
