"""RoiAlign (average mode) as bilinear GridSample at its sampling points, then an AveragePool.

onnx2tf converts RoiAlign to tf.image.crop_and_resize, which fails at run time on the node suite's
boxes ("Boxes contains at least one element that is not finite") and in any case takes one sample
per bin where RoiAlign averages sampling_ratio^2 of them. The ONNX definition, written out: per roi,
the bin (ph, pw) averages the bilinear values at y = y0 + (ph + (iy + 0.5) / gh) * bin_h (x alike),
where a point beyond [-1, H] (or [-1, W]) reads 0 and one inside is clamped to [0, H - 1]. Each roi's
image is gathered by its batch index; the clamped points, normalized for align_corners=0, are one
GridSample grid of out_h*gh by out_w*gw points; the mask of points inside multiplies it; an
AveragePool of gh by gw makes the bins. Exact up to float rounding. Max mode (onnxruntime takes the
max of the weighted corners, not of the samples) and an adaptive sampling_ratio of 0 (the grid would
depend on each roi's size) are refused; the image's C, H and W must be static.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, default_opset, standard_node, upgrade_opset
from convfix.rules import Rule, RuleContext

FLOAT = ir.DataType.FLOAT
_GRID_SAMPLE_SINCE = 16


def _refusal(node: ir.Node) -> str | None:
    """Why the rule cannot write this RoiAlign, or None."""
    image = node.inputs[0]
    if node.attributes.get_string("mode", "avg") != "avg":
        return "max mode: onnxruntime takes the max of the weighted corners, not of the samples"
    if node.attributes.get_int("sampling_ratio", 0) <= 0:
        return "adaptive sampling_ratio 0: the sampling grid would depend on each roi's size"
    if (
        image is None
        or image.shape is None
        or len(image.shape) != 4
        or not all(isinstance(d, int) for d in image.shape[1:])
    ):
        return "the image's rank or its C, H, W are not static"
    if image.dtype != FLOAT:
        return "not a float32 image"
    return None


def _points(b: Emitter, start: ir.Value, size: ir.Value, bins: int, grid: int, extent: int) -> tuple:
    """Along one axis: the sampling points of every roi [R, bins*grid], clamped and normalized for
    GridSample (align_corners=0), and 1.0 where a point lies within [-1, extent]."""
    index = np.arange(bins * grid)
    fraction = (index // grid + (index % grid + 0.5) / grid).astype(np.float32)[None, :]
    point = b.op(
        "Add", [start, b.op("Mul", [b.const(fraction), b.op("Div", [size, b.const(np.float32(bins))])])]
    )
    inside = b.op(
        "And",
        [
            b.op("GreaterOrEqual", [point, b.const(np.float32(-1))]),
            b.op("LessOrEqual", [point, b.const(np.float32(extent))]),
        ],
    )
    clamped = b.op("Clip", [point, b.const(np.float32(0)), b.const(np.float32(extent - 1))])
    normalized = b.op(
        "Sub",
        [
            b.op(
                "Div",
                [
                    b.op("Add", [b.op("Mul", [clamped, b.const(np.float32(2))]), b.const(np.float32(1))]),
                    b.const(np.float32(extent)),
                ],
            ),
            b.const(np.float32(1)),
        ],
    )
    return normalized, b.op("Cast", [inside], to=FLOAT.value)


def roi_align_sampled(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "RoiAlign")
    if node is None:
        return "not a RoiAlign"
    why = _refusal(node)
    if why is not None:
        return why
    if default_opset(model) < _GRID_SAMPLE_SINCE and (trouble := upgrade_opset(model, _GRID_SAMPLE_SINCE)):
        return trouble
    node = standard_node(model, finding, "RoiAlign")
    if node is None:
        return f"the node is lost moving the model to opset {_GRID_SAMPLE_SINCE}"
    image, rois, batch = node.inputs[0], node.inputs[1], node.inputs[2]
    _, _, height, width = image.shape
    out_h, out_w = node.attributes.get_int("output_height", 1), node.attributes.get_int("output_width", 1)
    grid = node.attributes.get_int("sampling_ratio", 0)
    scale = node.attributes.get_float("spatial_scale", 1.0)
    # half_pixel by default from opset 16, where the model now is (onnx's converter writes opset 10's
    # behaviour out as output_half_pixel)
    aligned = node.attributes.get_string("coordinate_transformation_mode", "half_pixel") == "half_pixel"
    b = Emitter(model, node)

    def corner(column: int) -> ir.Value:
        value = b.op("Slice", [rois, b.ints([column]), b.ints([column + 1]), b.ints([1])])
        value = b.op("Mul", [value, b.const(np.float32(scale))])
        return b.op("Sub", [value, b.const(np.float32(0.5))]) if aligned else value

    x0, y0, x1, y1 = (corner(c) for c in range(4))
    sizes = [b.op("Sub", [x1, x0]), b.op("Sub", [y1, y0])]
    if not aligned:  # rois of less than a pixel are widened to one
        sizes = [b.op("Max", [s, b.const(np.float32(1))]) for s in sizes]
    gx, inside_x = _points(b, x0, sizes[0], out_w, grid, width)
    gy, inside_y = _points(b, y0, sizes[1], out_h, grid, height)
    rows, columns = out_h * grid, out_w * grid
    count = b.op("Shape", [rois], start=0, end=1)
    full = b.op("Concat", [count, b.ints([rows, columns])], axis=0)
    along_x = b.op("Expand", [b.with_axes("Unsqueeze", gx, [1]), full])
    along_y = b.op("Expand", [b.with_axes("Unsqueeze", gy, [2]), full])
    points = b.op(
        "Concat", [b.with_axes("Unsqueeze", along_x, [3]), b.with_axes("Unsqueeze", along_y, [3])], axis=3
    )
    images = b.op("Gather", [image, b.op("Cast", [batch], to=ir.DataType.INT64.value)], axis=0)
    linear = "linear" if b.opset >= 20 else "bilinear"  # GridSample-20 renamed the mode
    sampled = b.op("GridSample", [images, points], mode=linear, padding_mode="border", align_corners=0)
    inside = b.op(
        "Mul", [b.with_axes("Unsqueeze", inside_y, [1, 3]), b.with_axes("Unsqueeze", inside_x, [1, 2])]
    )
    pooled = b.op(
        "AveragePool", [b.op("Mul", [sampled, inside])], kernel_shape=[grid, grid], strides=[grid, grid]
    )
    b.replace([pooled])
    return None


RULES = [
    Rule(
        "roi-align-sampled",
        ("divergence", "conversion-error"),
        roi_align_sampled,
        "RoiAlign (avg) as bilinear GridSample at its sampling points, masked, then an AveragePool per bin",
        ops=("RoiAlign",),
    ),
]
