"""MaxPool's indices and MaxUnpool, which consumes them, in forms onnx2tf converts.

Both use the flat index of an element in the whole N x C x spatial tensor (ONNX's convention).
- MaxPool with storage_order=1 (column-major indices): onnx2tf refuses it ("storage_order option is
  not implemented yet"). The pool runs row-major and the index is respelled: with r the row-major
  offset inside one (n, c) plane of an H x W input, h = r // W, w = r % W, and the column-major
  offset is w * H + h. 2-D pools only. Exact. (onnx2tf's own row-major indices are right only for
  one image of one channel without pads: it flattens them channels-last. Parity catches the rest.)
- MaxPool's indices (row-major), which onnx2tf flattens channels-last (right only for one image of
  one channel without pads: every `return_indices=True` pool of a real model differs): each window's
  taps are strided Slices of the input padded with the lowest finite value (far enough for ceil_mode;
  not -inf, which TFLite would write as that value anyway), stacked, and
  ArgMax picks the first largest, as onnxruntime's kernel does (a later tap wins only if larger);
  the tap's (row, column) and the (n, c) plane give the flat index (the plane's offsets a constant
  for a static batch, else counted at run time). The values come from the MaxPool itself. 2-D
  float pools over static C, H, W. Exact.
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


def indices_used(node: ir.Node) -> bool:
    """Whether a MaxPool's second output, its indices, is read or is a graph output."""
    return len(node.outputs) > 1 and bool(node.outputs[1].uses() or node.outputs[1].is_graph_output())


def column_major_indices(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "MaxPool")
    if node is None or node.attributes.get_int("storage_order", 0) != 1:
        return "not a MaxPool with storage_order=1"
    if not indices_used(node):
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


def _window_argmax_parameters(node: ir.Node) -> tuple[list[int], ...] | str:
    """(kernel, strides, pads (begin, end; ceil_mode's reach included), dilations, [C, H, W, OH, OW]),
    or why the indices cannot be computed by window ArgMax."""
    x, y = node.inputs[0], node.outputs[0]
    dims = [*(x.shape or [])[1:], *(y.shape or [])[2:]]
    if len(dims) != 5 or not all(isinstance(d, int) for d in dims) or len(y.shape) != 4:
        return "not a 2-D pool over static channels and spatial dims"
    if x.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
        return "not a float pool"
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME_*: the pads are the converter's to choose"
    kernel, strides = int_list(node, "kernel_shape", 1, 2), int_list(node, "strides", 1, 2)
    dilations, pads = int_list(node, "dilations", 1, 2), int_list(node, "pads", 0, 4)
    if node.attributes.get_string("auto_pad", "NOTSET") == "VALID":
        pads = [0, 0, 0, 0]
    _, height, width, out_h, out_w = dims
    reach = [
        (out - 1) * stride + (k - 1) * dilation + 1
        for out, stride, k, dilation in zip((out_h, out_w), strides, kernel, dilations, strict=True)
    ]
    ends = [max(pads[2 + i], reach[i] - (height, width)[i] - pads[i]) for i in range(2)]
    return kernel, strides, [*pads[:2], *ends], dilations, dims


def _plane_offsets(b: Emitter, like: ir.Value, images: int | object, channels: int, area: int) -> ir.Value:
    """(n * C + c) * H * W for each (n, c): a constant for a static batch, else n and c counted at run
    time by CumSum over ones shaped like `like` (its axis a 0-D tensor, as ONNX says: TF refuses [1],
    which onnxruntime takes)."""
    if isinstance(images, int):
        return b.const((np.arange(images * channels, dtype=np.int64) * area).reshape(images, channels, 1, 1))
    ones = b.op("Cast", [b.op("Equal", [like, like])], to=ir.DataType.INT64)
    image = b.op("Sub", [b.op("CumSum", [ones, b.const(np.array(0, np.int64))]), b.ints([1])])
    channel = b.op("Sub", [b.op("CumSum", [ones, b.const(np.array(1, np.int64))]), b.ints([1])])
    return b.op("Mul", [b.op("Add", [b.op("Mul", [image, b.ints([channels])]), channel]), b.ints([area])])


def maxpool_indices_as_window_argmax(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "MaxPool")
    if node is None:
        return "not a MaxPool node"
    if not indices_used(node):
        return "its indices are not used"
    if node.attributes.get_int("storage_order", 0) == 1:
        return "column-major indices (maxpool-column-major-indices takes them)"
    parameters = _window_argmax_parameters(node)
    if isinstance(parameters, str):
        return parameters
    kernel, strides, pads, dilations, (channels, height, width, out_h, out_w) = parameters
    x = node.inputs[0]
    b = Emitter(model, node)
    attributes = {name: attr.value for name, attr in node.attributes.items()}
    values = b.op("MaxPool", [x], **attributes)
    lowest = b.const(np.array(np.finfo(x.dtype.numpy()).min, x.dtype.numpy()))
    padded = b.op("Pad", [x, b.ints([0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]]), lowest])
    taps = []
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            starts = [i * dilations[0], j * dilations[1]]
            ends = [starts[0] + (out_h - 1) * strides[0] + 1, starts[1] + (out_w - 1) * strides[1] + 1]
            tap = b.op("Slice", [padded, b.ints(starts), b.ints(ends), b.ints([2, 3]), b.ints(strides)])
            taps.append(b.with_axes("Unsqueeze", tap, [4]))
    tap = b.op("ArgMax", [b.op("Concat", taps, axis=4)], axis=4, keepdims=0)
    rows = (np.arange(out_h) * strides[0] - pads[0]).reshape(out_h, 1)
    columns = (np.arange(out_w) * strides[1] - pads[1]).reshape(1, out_w)
    row = b.op(
        "Add", [b.op("Mul", [b.op("Div", [tap, b.ints([kernel[1]])]), b.ints([dilations[0]])]), b.const(rows)]
    )
    column = b.op(
        "Add",
        [b.op("Mul", [b.op("Mod", [tap, b.ints([kernel[1]])]), b.ints([dilations[1]])]), b.const(columns)],
    )
    within = b.op("Add", [b.op("Mul", [row, b.ints([width])]), column])
    flat = b.op("Add", [within, _plane_offsets(b, tap, x.shape[0], channels, height * width)])
    b.replace([values, flat])
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
        "maxpool-indices-as-window-argmax",
        _KINDS,
        maxpool_indices_as_window_argmax,
        "MaxPool's indices as the ArgMax over each window's taps (strided Slices), offset to the flat index",
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
