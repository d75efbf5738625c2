"""GridSample in nearest mode as a gather of the pixels the grid points at.

onnx2tf converts GridSample's nearest mode with its output laid out wrongly (seen: [1, 2, 4, 1] for
[1, 1, 2, 4], matching no layout). Nearest sampling is a selection: per spatial dim, the grid's
coordinate is unnormalized (align_corners or not), rounded half to even as the spec and PyTorch do,
and the pixel at those indices is gathered from the input seen as [N, C, H*W...] with GatherElements;
with padding_mode zeros a point outside the input reads 0, with border it reads the nearest edge.
Exact for 2-D and 3-D grids; reflection padding is refused. The channels and spatial dims must be
static (the batch may be dynamic).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def _index(
    b: Emitter, grid: ir.Value, j: int, rank: int, length: int, align: bool
) -> tuple[ir.Value, ir.Value]:
    """Spatial dim j's pixel index (clamped, int64) and whether the point lies inside the input."""
    coordinate = b.op("Gather", [grid, b.const(np.array(rank - 1 - j, np.int64))], axis=-1)
    one, half = b.const(np.array(1.0, np.float32)), b.const(np.array(0.5, np.float32))
    shifted = b.op("Add", [coordinate, one])
    if align:
        position = b.op("Mul", [b.op("Mul", [shifted, half]), b.const(np.array(length - 1, np.float32))])
    else:
        stretched = b.op("Mul", [shifted, b.const(np.array(length, np.float32))])
        position = b.op("Mul", [b.op("Sub", [stretched, one]), half])
    rounded = b.op("Round", [position])
    low, high = b.const(np.array(0.0, np.float32)), b.const(np.array(length - 1, np.float32))
    inside = b.op("And", [b.op("GreaterOrEqual", [rounded, low]), b.op("LessOrEqual", [rounded, high])])
    return b.op("Cast", [b.op("Clip", [rounded, low, high])], to=ir.DataType.INT64), inside


def grid_sample_nearest(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "GridSample")
    if node is None:
        return "not a GridSample node"
    x, grid = node.inputs
    if node.attributes.get_string("mode", "linear") != "nearest":
        return "not the nearest mode"
    padding = node.attributes.get_string("padding_mode", "zeros")
    if padding not in ("zeros", "border"):
        return f"padding_mode {padding} is not spelled out"
    if x.shape is None or grid.shape is None or not all(isinstance(d, int) for d in x.shape[1:]):
        return "the channels or spatial dims of X are not static"
    if grid.dtype != ir.DataType.FLOAT or not all(isinstance(d, int) for d in grid.shape[1:]):
        return "the grid is not float32 with static dims past the batch"
    lengths, outs = [int(d) for d in x.shape[2:]], [int(d) for d in grid.shape[1:-1]]
    rank, channels = len(lengths), int(x.shape[1])
    b = Emitter(model, node)
    align = bool(node.attributes.get_int("align_corners", 0))
    flat, inside = None, None
    for j, length in enumerate(lengths):
        index, within = _index(b, grid, j, rank, length, align)
        stride = b.const(np.array(int(np.prod(lengths[j + 1 :])), np.int64))
        term = b.op("Mul", [index, stride])
        flat = term if flat is None else b.op("Add", [flat, term])
        inside = within if inside is None else b.op("And", [inside, within])
    points = int(np.prod(outs))
    picks = b.op("Reshape", [flat, b.const(np.array([0, 1, points], np.int64))])
    picks = b.op("Expand", [picks, b.const(np.array([1, channels, 1], np.int64))])
    pixels = b.op("Reshape", [x, b.const(np.array([0, channels, int(np.prod(lengths))], np.int64))])
    gathered = b.op("GatherElements", [pixels, picks], axis=2)
    y = b.op("Reshape", [gathered, b.const(np.array([0, channels, *outs], np.int64))])
    if padding == "zeros":
        mask = b.op("Reshape", [inside, b.const(np.array([0, 1, *outs], np.int64))])
        y = b.op("Where", [mask, y, b.const(np.zeros((), x.dtype.numpy()))])
    b.replace([y])
    return None


RULES = [
    Rule(
        "grid-sample-nearest",
        ("conversion-error", "divergence"),
        grid_sample_nearest,
        "GridSample nearest (onnx2tf lays its output out wrongly) as a gather of the rounded grid points",
        ops=("GridSample",),
    )
]
