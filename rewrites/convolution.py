"""Convolutions onnx2tf 1.29 fails on, as forms it converts.

- ConvTranspose: onnx2tf hands TF's conv_transpose the ONNX output shape as its `input_sizes`, which
  fails on a dynamic batch dim (`Expected int32 ... got ['batch', 16, 16, 8]`), and it reads the weight
  only as a constant (`IndexError`). A transposed convolution is a stride-1 correlation over the input
  with stride-1 zeros inserted after each element, padded by (kernel-1)*dilation - pads (output_padding
  at the end; pads from auto_pad or output_shape as onnxruntime computes them), with the kernel flipped
  along every spatial axis and its channel axes swapped per group. The zeros and pads go in with
  Reshape and Pad in the input's own layout, one axis at a time (a channels-last copy loses onnx2tf's
  track of the layout on a dynamic batch). A constant kernel is flipped here and the correlation is a
  Conv; a run-time one is spelled out as below, the flip as the taps taken in reverse order (onnx2tf
  takes a Gather over the weight's second spatial axis wrongly, a Slice with step -1 without reversing).
- Conv and ConvInteger whose weight is not a constant (a graph input): onnx2tf reads it as one
  (`IndexError`). The correlation is spelled out channels-last (im2col): one strided Slice of the padded
  input per kernel tap, concatenated, times the weight as a [taps * C/group, M/group] matrix per group
  (MatMul), plus the bias. The weight stays a run-time input. ConvInteger does it in int32 after
  subtracting the zero points (the padding then holds zeros, as it held the zero point): exact.
- Conv with strides and dilations both above 1 (a strided dilated Conv1d: Keras refuses "`strides > 1`
  not supported in conjunction with `dilation_rate > 1`"): the Conv at stride 1, then a Slice taking
  every stride-th output along each spatial axis; the same sums, exact.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, find_node, int_list
from convfix.rules import Rule, RuleContext

CONVOLUTIONS = ("Conv", "ConvInteger")


class _Builder(Emitter):
    """An Emitter with the padding and slicing a correlation needs."""

    def pad(self, x: ir.Value, pads: list[int]) -> ir.Value:
        """Zeros around x (pads for every dim, begins then ends; pads an input from opset 11)."""
        if not any(pads):
            return x
        if self.opset >= 11:
            return self.op("Pad", [x, self.ints(pads)])
        return self.op("Pad", [x], pads=pads)

    def slice(
        self, x: ir.Value, starts: list[int], ends: list[int], axes: list[int], steps: list[int]
    ) -> ir.Value:
        return self.op("Slice", [x, self.ints(starts), self.ints(ends), self.ints(axes), self.ints(steps)])


@dataclass
class _Axis:
    """One spatial axis of a correlation: input length, kernel, stride, dilation and pads (a negative pad
    crops)."""

    size: int
    kernel: int
    stride: int
    dilation: int
    begin: int
    end: int

    @property
    def outputs(self) -> int:
        return (self.size + self.begin + self.end - (self.kernel - 1) * self.dilation - 1) // self.stride + 1


def _node(model: ir.Model, finding: Finding, op_types: tuple[str, ...]) -> ir.Node | str:
    """The finding's node, if its input's channels and spatial dims and its weight's shape are static."""
    node = find_node(model, finding)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in op_types:
        return f"no {'/'.join(op_types)} at the finding"
    x, w = node.inputs[0], node.inputs[1]
    if x.shape is None or len(x.shape) < 3 or not all(isinstance(d, int) for d in x.shape[1:]):
        return f"{node.name}: the input's channels and spatial dims are not static"
    if w.shape is None or not w.shape.is_static() or len(w.shape) != len(x.shape):
        return f"{node.name}: the weight's shape is not static"
    return node


def _conv_axes(node: ir.Node) -> list[_Axis]:
    """Conv's geometry; SAME pads as the spec computes them (output ceil(size / stride), the odd element
    at the end for SAME_UPPER, at the start for SAME_LOWER)."""
    spatial, kernel = list(node.inputs[0].shape[2:]), list(node.inputs[1].shape[2:])
    rank = len(spatial)
    strides, dilations = int_list(node, "strides", 1, rank), int_list(node, "dilations", 1, rank)
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    pads = int_list(node, "pads", 0, 2 * rank) if auto_pad == "NOTSET" else [0] * (2 * rank)
    axes = []
    for i, (size, k, s, d) in enumerate(zip(spatial, kernel, strides, dilations, strict=True)):
        begin, end = pads[i], pads[rank + i]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            begin, end = (large, small) if auto_pad == "SAME_LOWER" else (small, large)
        axes.append(_Axis(size, k, s, d, begin, end))
    return axes


def _transposed_pads(node: ir.Node, output_padding: list[int]) -> list[int] | str:
    """ConvTranspose's pads: the attribute, or from output_shape (SAME: size * stride) as onnxruntime
    computes them: the odd one at the start but for SAME_UPPER, and an output_shape longer than the full
    output (by less than a stride) extended at the end."""
    spatial, kernel = list(node.inputs[0].shape[2:]), list(node.inputs[1].shape[2:])
    rank = len(spatial)
    strides, dilations = int_list(node, "strides", 1, rank), int_list(node, "dilations", 1, rank)
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    given = list(node.attributes.get_ints("output_shape", ()))[-rank:]
    wanted = given or [size * s for size, s in zip(spatial, strides, strict=True)]
    if not given and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        return int_list(node, "pads", 0, 2 * rank) if auto_pad == "NOTSET" else [0] * (2 * rank)
    begins, ends = [], []
    for size, k, s, d, extra, out in zip(
        spatial, kernel, strides, dilations, output_padding, wanted, strict=True
    ):
        total = s * (size - 1) + extra + (k - 1) * d + 1 - out
        if total < 0 and not given:
            return f"{node.name}: SAME with a stride beyond the kernel (onnxruntime departs from the spec)"
        if total <= -s:
            return f"{node.name}: output_shape {out} exceeds the full output by a stride or more"
        begin = 0 if total < 0 else total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
        begins.append(begin)
        ends.append(total - begin)
    return begins + ends


def _transposed_axes(node: ir.Node) -> list[_Axis] | str:
    """The stride-1 correlation a ConvTranspose is, over its input with stride-1 zeros after each element."""
    spatial, kernel = list(node.inputs[0].shape[2:]), list(node.inputs[1].shape[2:])
    rank = len(spatial)
    strides, dilations = int_list(node, "strides", 1, rank), int_list(node, "dilations", 1, rank)
    output_padding = int_list(node, "output_padding", 0, rank)
    pads = _transposed_pads(node, output_padding)
    if isinstance(pads, str):
        return pads
    axes = []
    for i, (size, k, s, d, extra) in enumerate(
        zip(spatial, kernel, strides, dilations, output_padding, strict=True)
    ):
        reach = (k - 1) * d
        axes.append(_Axis(size * s, k, 1, d, reach - pads[i], reach - pads[rank + i] + extra - (s - 1)))
    return axes


def _channels_last(b: _Builder, x: ir.Value, rank: int) -> ir.Value:
    return b.op("Transpose", [x], perm=[0, *range(2, rank + 2), 1])


def _channels_first(b: _Builder, x: ir.Value, rank: int) -> ir.Value:
    return b.op("Transpose", [x], perm=[0, rank + 1, *range(1, rank + 1)])


def _pad_last(b: _Builder, x: ir.Value, begin: int, end: int, length: int, rank: int) -> ir.Value:
    """Zeros at both ends of x's last dim (of `length`); a negative amount slices elements off."""
    if begin < 0 or end < 0:
        x = b.slice(x, [max(0, -begin)], [length - max(0, -end)], [rank - 1], [1])
    pads = [0] * (2 * rank)
    pads[rank - 1], pads[-1] = max(0, begin), max(0, end)
    return b.pad(x, pads)


def _spread(b: _Builder, x: ir.Value, shape: list[int], strides: list[int], axes: list[_Axis]) -> ir.Value:
    """x ([N, C, *spatial], all but N static) with stride-1 zeros after each element along every
    spatial axis, then the correlation's pads (a negative pad crops), in x's own layout (onnx2tf loses
    track of a channels-last copy on a dynamic batch). Per axis: x seen as [N, 1, ..., rows, row] (the
    elements up to the axis, those after it) gets zeros at the end of each row; seen as
    [N, 1, ..., lines, axis * row], it is padded at both ends."""
    dims, rank = list(shape[1:]), len(shape)
    ones = [1] * (rank - 3)
    for i, (s, a) in enumerate(zip(strides, axes, strict=True), start=1):
        row = math.prod(dims[i + 1 :])
        if s > 1:
            x = b.op("Reshape", [x, b.ints([-1, *ones, math.prod(dims[: i + 1]), row])])
            x = _pad_last(b, x, 0, (s - 1) * row, row, rank)
            dims[i] *= s
        if a.begin or a.end:
            x = b.op("Reshape", [x, b.ints([-1, *ones, math.prod(dims[:i]), dims[i] * row])])
            x = _pad_last(b, x, a.begin * row, a.end * row, dims[i] * row, rank)
            dims[i] += a.begin + a.end
    return b.op("Reshape", [x, b.ints([-1, *dims])])


def _correlate(
    b: _Builder, x: ir.Value, channels: int, matrices: list[ir.Value], axes: list[_Axis], flip: bool = False
) -> ir.Value:
    """A channels-last correlation (pads >= 0): [N, *spatial, C] to [N, *outputs, M], one strided Slice
    per tap of the padded input, concatenated, times each group's [taps * C/group, M/group] matrix.
    With `flip`, the kernel is taken flipped along every spatial axis: the taps' slices go in reverse
    order (reversing every axis of a kernel reverses its row-major order)."""
    rank = len(axes)
    padded = b.pad(x, [0, *(a.begin for a in axes), 0, 0, *(a.end for a in axes), 0])
    width = channels // len(matrices)
    spatial, steps = list(range(1, rank + 1)), [a.stride for a in axes]
    results = []
    for g, matrix in enumerate(matrices):
        part = (
            padded if len(matrices) == 1 else b.slice(padded, [g * width], [(g + 1) * width], [rank + 1], [1])
        )
        taps = []
        order = list(itertools.product(*(range(a.kernel) for a in axes)))
        for tap in reversed(order) if flip else order:
            starts = [t * a.dilation for t, a in zip(tap, axes, strict=True)]
            ends = [start + (a.outputs - 1) * a.stride + 1 for start, a in zip(starts, axes, strict=True)]
            taps.append(b.slice(part, starts, ends, spatial, steps))
        columns = taps[0] if len(taps) == 1 else b.op("Concat", taps, axis=rank + 1)
        results.append(b.op("MatMul", [columns, matrix]))
    return results[0] if len(results) == 1 else b.op("Concat", results, axis=rank + 1)


def _conv_matrix(b: _Builder, w: ir.Value, shape: list[int]) -> ir.Value:
    """A Conv weight [M, C/group, *kernel] as a [taps * C/group, M] matrix, rows in (tap, channel) order."""
    out, width, *kernel = shape
    rows = b.op("Transpose", [w], perm=[*range(2, len(kernel) + 2), 1, 0])
    return b.op("Reshape", [rows, b.ints([math.prod(kernel) * width, out])])


def _per_group(b: _Builder, matrix: ir.Value, out: int, groups: int) -> list[ir.Value]:
    """The [rows, M] matrix's columns of each group."""
    if groups == 1:
        return [matrix]
    step = out // groups
    return [b.slice(matrix, [g * step], [(g + 1) * step], [1], [1]) for g in range(groups)]


def _transposed_matrices(b: _Builder, w: ir.Value, groups: int) -> list[ir.Value]:
    """A ConvTranspose weight [C, M/group, *kernel] as one [taps * C/group, M/group] matrix per group
    (unflipped: onnx2tf takes a Gather over a weight's second spatial axis wrongly)."""
    channels, out, *kernel = w.shape.numpy()
    rank = len(kernel)
    rows = b.op("Transpose", [w], perm=[*range(2, rank + 2), 0, 1])
    width, shape = channels // groups, b.ints([math.prod(kernel) * (channels // groups), out])
    parts = [
        rows if groups == 1 else b.slice(rows, [g * width], [(g + 1) * width], [rank], [1])
        for g in range(groups)
    ]
    return [b.op("Reshape", [part, shape]) for part in parts]


def _flipped_kernel(weight: np.ndarray, groups: int) -> np.ndarray:
    """ConvTranspose's [C, M/group, *kernel] as the Conv kernel [M, C/group, *kernel] it correlates with."""
    channels, out, *kernel = weight.shape
    per_group = weight.reshape(groups, channels // groups, out, *kernel).swapaxes(1, 2)
    flipped = per_group[(..., *[slice(None, None, -1)] * len(kernel))]
    return np.ascontiguousarray(flipped.reshape(groups * out, channels // groups, *kernel))


def _with_bias(b: _Builder, y: ir.Value, node: ir.Node) -> ir.Value:
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    return y if bias is None else b.op("Add", [y, bias])


def _centered(b: _Builder, value: ir.Value, point: ir.Value | None, rank: int) -> ir.Value:
    """A ConvInteger operand in int32 minus its zero point, laid along axis 0 of the operand's `rank`
    dims (the weight's: one for all or one per output channel)."""
    value = b.op("Cast", [value], to=ir.DataType.INT32)
    if point is None:
        return value
    point = b.op("Reshape", [b.op("Cast", [point], to=ir.DataType.INT32), b.ints([-1] + [1] * (rank - 1))])
    return b.op("Sub", [value, point])


def conv_runtime_weight(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = _node(model, finding, CONVOLUTIONS)
    if isinstance(node, str):
        return node
    if ir.convenience.get_const_tensor(node.inputs[1]) is not None:
        return f"{node.name}: the weight is a constant"
    b = _Builder(model, node)
    x, w = node.inputs[0], node.inputs[1]
    rank, groups, shape = len(x.shape) - 2, node.attributes.get_int("group", 1), list(w.shape.numpy())
    if node.op_type == "ConvInteger":
        points = [*node.inputs[2:], None, None]
        x, w = _centered(b, x, points[0], rank + 2), _centered(b, w, points[1], rank + 2)
    matrices = _per_group(b, _conv_matrix(b, w, shape), shape[0], groups)
    y = _correlate(b, _channels_last(b, x, rank), node.inputs[0].shape[1], matrices, _conv_axes(node))
    if node.op_type == "Conv":
        y = _with_bias(b, y, node)
    result = _channels_first(b, y, rank)
    b.replace([result])
    return None


def transpose_as_conv(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = _node(model, finding, ("ConvTranspose",))
    if isinstance(node, str):
        return node
    axes = _transposed_axes(node)
    if isinstance(axes, str):
        return axes
    x, w = node.inputs[0], node.inputs[1]
    rank, groups = len(x.shape) - 2, node.attributes.get_int("group", 1)
    strides = int_list(node, "strides", 1, rank)
    b = _Builder(model, node)
    spread = x
    if any(s > 1 for s in strides) or any(a.begin < 0 or a.end < 0 for a in axes):
        padded = [_Axis(a.size + a.begin + a.end, a.kernel, 1, a.dilation, 0, 0) for a in axes]
        if {x.shape[1], *(a.size for a in padded)} == {x.shape[1]}:
            return f"{node.name}: the channels and every padded spatial dim are equal (onnx2tf confuses them)"
        spread, axes = _spread(b, x, list(x.shape), strides, axes), padded
    weight = ir.convenience.get_const_tensor(w)
    if weight is None:
        matrices = _transposed_matrices(b, w, groups)
        y = _correlate(b, _channels_last(b, spread, rank), x.shape[1], matrices, axes, flip=True)
        result = _channels_first(b, _with_bias(b, y, node), rank)
    else:
        attributes = {
            "dilations": [a.dilation for a in axes],
            "group": groups,
            "kernel_shape": [a.kernel for a in axes],
            "pads": [a.begin for a in axes] + [a.end for a in axes],
        }
        kernel = b.const(_flipped_kernel(weight.numpy(), groups))
        result = b.op("Conv", [spread, kernel, *node.inputs[2:]], **attributes)
    b.replace([result])
    return None


_LAST = np.iinfo(np.int64).max


def strided_dilated_conv(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
        return "no Conv at the finding"
    w = node.inputs[1]
    spatial = len(w.shape) - 2 if w.shape is not None else len(node.attributes.get_ints("kernel_shape", []))
    if spatial < 1:
        return "the kernel's rank is unknown"
    strides = int_list(node, "strides", 1, spatial)
    dilations = int_list(node, "dilations", 1, spatial)
    if all(s == 1 for s in strides) or all(d == 1 for d in dilations):
        return "not a Conv with both strides and dilations above 1"
    if node.attributes.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME pads by the stride: its pads differ at stride 1"
    b = Emitter(model, node)
    attributes = {name: attr.value for name, attr in node.attributes.items()}
    attributes["strides"] = [1] * spatial
    dense = b.op("Conv", list(node.inputs), **attributes)
    axes = list(range(2, 2 + spatial))
    begins, ends = b.ints([0] * spatial), b.ints([_LAST] * spatial)
    b.replace([b.op("Slice", [dense, begins, ends, b.ints(axes), b.ints(strides)])])
    return None


_KINDS = ("conversion-error", "divergence")
RULES = [
    Rule(
        "strided-dilated-conv",
        _KINDS,
        strided_dilated_conv,
        "Conv with strides and dilations both above 1 as a stride-1 Conv and a strided Slice",
        ops=("Conv",),
    ),
    Rule(
        "conv-transpose-as-conv",
        _KINDS,
        transpose_as_conv,
        "ConvTranspose as a Conv over the input with zeros inserted, the kernel flipped and channels swapped",
        ops=("ConvTranspose",),
    ),
    Rule(
        "conv-runtime-weight",
        _KINDS,
        conv_runtime_weight,
        "Conv/ConvInteger with a run-time weight as strided Slices per tap, Concat and MatMul (im2col)",
        ops=CONVOLUTIONS,
    ),
]
