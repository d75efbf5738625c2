"""DeformConv (opset 19; onnxruntime 1.23 has no kernel for it and onnx2tf no implementation) as what it
is defined to be: a convolution whose taps read the input at learned fractional positions.

Output position (i, j), tap (a, b) of offset group g reads X at
    y = i * stride_h - pad_top + a * dilation_h + offset[n, 2 (g K + k)], x likewise with offset[.. + 1]
(k = a kW + b, K = kH kW) by bilinear interpolation, each corner outside the input counting 0, times
mask[n, g K + k] when given. That is GridSample (bilinear, align_corners=1, zeros padding) at the
normalized point (2 x / (W - 1) - 1, 2 y / (H - 1) - 1): one GridSample per offset group samples all
K taps at once (the taps stacked along the grid's rows). The samples, laid out as im2col's [N, C K,
oH oW], are multiplied by the weights as a [M / group, C / group K] matrix per group, plus the bias.
2-D; static channels, spatial dims and output size; the input's dims above 1 (the normalization divides
by W - 1). Exact up to the order of the sums.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, int_list, standard_node
from convfix.rules import Rule, RuleContext


def _static(value: ir.Value | None, rank: int) -> list[int] | None:
    if value is None or value.shape is None or len(value.shape) != rank:
        return None
    dims = list(value.shape)
    return dims if all(isinstance(d, int) for d in dims) else None


def deform_conv(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "DeformConv")
    if node is None:
        return "not a DeformConv node"
    x, w, offset = node.inputs[:3]
    bias = node.inputs[3] if len(node.inputs) > 3 else None
    mask = node.inputs[4] if len(node.inputs) > 4 else None
    x_dims, w_dims, o_dims = _static(x, 4), _static(w, 4), _static(offset, 4)
    if x_dims is None or w_dims is None or o_dims is None or x.dtype is None:
        return "2-D only, with static dims of X, W and offset"
    batch, channels, height, width = x_dims
    kernel = (w_dims[2], w_dims[3])
    taps = kernel[0] * kernel[1]
    groups, offset_groups = node.attributes.get_int("group", 1), node.attributes.get_int("offset_group", 1)
    strides, dilations = int_list(node, "strides", 1, 2), int_list(node, "dilations", 1, 2)
    pads = int_list(node, "pads", 0, 4)
    out_h, out_w = o_dims[2], o_dims[3]
    if min(height, width) < 2 or channels % offset_groups or channels % groups or w_dims[0] % groups:
        return "an input dim of 1, or channels that the groups do not divide"
    b = Emitter(model, node)
    dtype = x.dtype.numpy()
    # The point each (tap, output position) reads before the offsets: [K, oH, oW] per axis.
    rows = np.arange(out_h) * strides[0] - pads[0]
    cols = np.arange(out_w) * strides[1] - pads[1]
    tap_rows = np.repeat(np.arange(kernel[0]) * dilations[0], kernel[1])
    tap_cols = np.tile(np.arange(kernel[1]) * dilations[1], kernel[0])
    base_y = (tap_rows[:, None, None] + rows[None, :, None] + 0 * cols[None, None, :]).astype(dtype)
    base_x = (tap_cols[:, None, None] + 0 * rows[None, :, None] + cols[None, None, :]).astype(dtype)
    # offset [N, G * K * 2, oH, oW] -> [N, G, K, 2, oH, oW]
    steps = b.op("Reshape", [offset, b.ints([batch, offset_groups, taps, 2, out_h, out_w])])

    def part(index: int) -> ir.Value:
        picked = b.op("Slice", [steps, b.ints([index]), b.ints([index + 1]), b.ints([3])])
        return b.op("Squeeze", [picked, b.ints([3])])  # [N, G, K, oH, oW]

    y = b.op("Add", [part(0), b.const(base_y)])
    x_pos = b.op("Add", [part(1), b.const(base_x)])
    grid_y = b.op(
        "Sub", [b.op("Mul", [y, b.const(np.array(2 / (height - 1), dtype))]), b.const(np.array(1, dtype))]
    )
    grid_x = b.op(
        "Sub", [b.op("Mul", [x_pos, b.const(np.array(2 / (width - 1), dtype))]), b.const(np.array(1, dtype))]
    )
    grid = b.op(
        "Concat",
        [b.op("Unsqueeze", [grid_x, b.ints([-1])]), b.op("Unsqueeze", [grid_y, b.ints([-1])])],
        axis=-1,
    )
    per_group = channels // offset_groups
    linear = "linear" if b.opset >= 20 else "bilinear"  # GridSample-20 renamed the mode
    samples = []
    for g in range(offset_groups):
        group_grid = b.op("Slice", [grid, b.ints([g]), b.ints([g + 1]), b.ints([1])])
        group_grid = b.op("Reshape", [group_grid, b.ints([batch, taps * out_h, out_w, 2])])
        group_x = b.op("Slice", [x, b.ints([g * per_group]), b.ints([(g + 1) * per_group]), b.ints([1])])
        sampled = b.op(
            "GridSample", [group_x, group_grid], mode=linear, padding_mode="zeros", align_corners=1
        )
        sampled = b.op("Reshape", [sampled, b.ints([batch, per_group, taps, out_h, out_w])])
        if mask is not None:
            group_mask = b.op("Slice", [mask, b.ints([g * taps]), b.ints([(g + 1) * taps]), b.ints([1])])
            sampled = b.op("Mul", [sampled, b.op("Unsqueeze", [group_mask, b.ints([1])])])
        samples.append(sampled)
    columns = samples[0] if len(samples) == 1 else b.op("Concat", samples, axis=1)  # [N, C, K, oH, oW]
    out_channels = w_dims[0]
    outputs = []
    in_per_group, out_per_group = channels // groups, out_channels // groups
    for g in range(groups):
        group_columns = b.op(
            "Slice", [columns, b.ints([g * in_per_group]), b.ints([(g + 1) * in_per_group]), b.ints([1])]
        )
        group_columns = b.op("Reshape", [group_columns, b.ints([batch, in_per_group * taps, out_h * out_w])])
        group_w = b.op(
            "Slice", [w, b.ints([g * out_per_group]), b.ints([(g + 1) * out_per_group]), b.ints([0])]
        )
        group_w = b.op("Reshape", [group_w, b.ints([out_per_group, in_per_group * taps])])
        outputs.append(b.op("MatMul", [group_w, group_columns]))  # [N, M/group, oH oW]
    result = outputs[0] if len(outputs) == 1 else b.op("Concat", outputs, axis=1)
    result = b.op("Reshape", [result, b.ints([batch, out_channels, out_h, out_w])])
    if bias is not None:
        result = b.op("Add", [result, b.op("Reshape", [bias, b.ints([1, out_channels, 1, 1])])])
    b.replace([result])
    return None


RULES = [
    Rule(
        "deform-conv-as-grid-sample",
        ("unsupported-op", "conversion-error", "divergence"),
        deform_conv,
        "DeformConv as one bilinear GridSample per offset group at the offset taps, then im2col's "
        "MatMul with the weights per group, plus the bias",
        ops=("DeformConv",),
    )
]
