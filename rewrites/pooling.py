"""Pooling forms onnx2tf 1.29 gets wrong, as forms it converts.

- auto_pad SAME_LOWER/SAME_UPPER: onnx2tf pads SAME_LOWER like TF's SAME (the odd element at the end:
  wrong shapes). Explicit pads computed from the static input shape, as the ONNX spec defines them, are
  the same op. LpPool's pads become a Pad of zeros in front (zeros add nothing to a sum of |x|^p):
  onnx2tf pools explicit pads that equal TF's SAME ones as an average over the unpadded elements times
  the kernel size, wrong along the border.
- AveragePool with dilations: TF's avg_pool has none, and onnx2tf drops them (wrong shapes). The
  average is a Conv with a kernel of ones and the same dilations and pads (zeros, the end padded
  further where ceil_mode needs it), per channel (a Split, then a Concat: onnx2tf's depthwise Conv with
  dilations computes wrong values) and at stride 1 (TF's Conv takes no strides with dilations; every
  stride-th position is taken with a Slice), divided by a constant: how many taps of each window fall
  inside the input (count_include_pad=0) or inside the padded input (1), counted per dim from the shapes.
- MaxPool with ceil_mode over dynamic spatial dims: onnx2tf computes ceil_mode's extra end padding
  from static dims only ("unsupported operand type(s) for +: 'NoneType' and 'int"; SqueezeNet with
  dynamic H and W). The end is padded with -inf by stride - 1 more, statically, and the pool runs in
  floor mode: floor((L + s - 1 - k) / s) = ceil((L - k) / s) for every length L. Only where no
  ceil-mode window can start in the end padding (end pad + stride <= dilated kernel), where ONNX
  drops that window.
- MaxPool with dilations and strides in 3-D: onnx2tf refuses it. With stride 1 it converts; every
  stride-th window is then taken with a Slice, the end padded further (pads are ignored by a max)
  where ceil_mode makes the last window run past it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import default_opset, find_node, int64_constant, int_list, replace_node
from convfix.rules import Rule, RuleContext

POOLS = ("AveragePool", "MaxPool", "LpPool")


def _pool(model: ir.Model, finding: Finding, op_types: tuple[str, ...]) -> ir.Node | str:
    """The finding's pool node, if its input has a static rank and spatial dims."""
    node = find_node(model, finding)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in op_types:
        return f"no {'/'.join(op_types)} at the finding"
    x = node.inputs[0]
    if x.shape is None or len(x.shape) < 3 or not all(isinstance(d, int) for d in x.shape[1:]):
        return f"{node.name}: the input's channels and spatial dims are not static"
    return node


def _same_pads(node: ir.Node) -> list[int]:
    """ONNX's SAME_UPPER/SAME_LOWER pads: output ceil(L / stride), the odd element at the end (upper)
    or at the start (lower)."""
    spatial = list(node.inputs[0].shape[2:])
    rank = len(spatial)
    kernel = int_list(node, "kernel_shape", 1, rank)
    strides, dilations = int_list(node, "strides", 1, rank), int_list(node, "dilations", 1, rank)
    lower = node.attributes.get_string("auto_pad") == "SAME_LOWER"
    begins, ends = [], []
    for size, k, s, d in zip(spatial, kernel, strides, dilations, strict=True):
        total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begins.append(large if lower else small)
        ends.append(small if lower else large)
    return begins + ends


def _pad_in_front(model: ir.Model, node: ir.Node, pads: list[int]) -> None:
    """A Pad of zeros before the node (pads given for the spatial dims only)."""
    rank = len(pads) // 2
    every_dim = [0, 0, *pads[:rank], 0, 0, *pads[rank:]]
    if default_opset(model) >= 11:
        amounts = int64_constant(every_dim, f"{node.name}_pads")
        pad = ir.node("Pad", [node.inputs[0], amounts.outputs[0]], name=f"{node.name}_pad")
        node.graph.insert_before(node, [amounts, pad])
    else:
        pad = ir.node("Pad", [node.inputs[0]], attributes={"pads": every_dim}, name=f"{node.name}_pad")
        node.graph.insert_before(node, pad)
    node.replace_input_with(0, pad.outputs[0])


def explicit_pads(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = _pool(model, finding, POOLS)
    if isinstance(node, str):
        return node
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pads = _same_pads(node)
    elif auto_pad == "NOTSET" and node.op_type == "LpPool" and any(node.attributes.get_ints("pads", ())):
        pads = list(node.attributes.get_ints("pads"))
    else:
        return f"{node.name}: no SAME_UPPER/SAME_LOWER auto_pad (nor an LpPool with pads)"
    node.attributes["auto_pad"] = ir.AttrString("auto_pad", "NOTSET")
    if node.op_type == "LpPool":
        _pad_in_front(model, node, pads)
        pads = [0] * len(pads)
    node.attributes["pads"] = ir.AttrInt64s("pads", pads)
    return None


class _Window:
    """One spatial dim of a pool: its geometry and what the rewrites need from it."""

    def __init__(self, size: int, kernel: int, stride: int, dilation: int, begin: int, end: int) -> None:
        self.size, self.kernel, self.stride, self.dilation = size, kernel, stride, dilation
        self.begin, self.end = begin, end

    def outputs(self, ceil_mode: bool) -> int:
        """The spec's output length; with ceil_mode, the last window must start inside the input or
        its begin padding."""
        span = self.size + self.begin + self.end - (self.kernel - 1) * self.dilation - 1
        count = (math.ceil if ceil_mode else math.floor)(span / self.stride) + 1
        return count - 1 if ceil_mode and (count - 1) * self.stride >= self.size + self.begin else count

    def padded_end(self, outputs: int) -> int:
        """End padding that makes exactly `outputs` windows fit (never less than zero)."""
        needed = (outputs - 1) * self.stride + (self.kernel - 1) * self.dilation + 1
        return max(0, needed - self.size - self.begin)

    def counts(self, outputs: int, include_pad: bool) -> np.ndarray:
        """Per output position, the taps inside the input (or inside the input and its pads)."""
        low, high = (-self.begin, self.size + self.end) if include_pad else (0, self.size)
        starts = np.arange(outputs)[:, None] * self.stride - self.begin
        taps = starts + np.arange(self.kernel)[None, :] * self.dilation
        return ((taps >= low) & (taps < high)).sum(axis=1)


def _windows(node: ir.Node) -> list[_Window]:
    spatial = list(node.inputs[0].shape[2:])
    rank = len(spatial)
    kernel = int_list(node, "kernel_shape", 1, rank)
    strides, dilations = int_list(node, "strides", 1, rank), int_list(node, "dilations", 1, rank)
    pads = int_list(node, "pads", 0, 2 * rank)
    return [
        _Window(size, k, s, d, b, e)
        for size, k, s, d, b, e in zip(
            spatial, kernel, strides, dilations, pads[:rank], pads[rank:], strict=True
        )
    ]


def _refusal(node: ir.Node) -> str | None:
    """Why the rewrite of this dilated pool does not apply, or None."""
    if node.attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
        return f"{node.name}: auto_pad is set (explicit pads first)"
    if all(d == 1 for d in int_list(node, "dilations", 1, len(node.inputs[0].shape) - 2)):
        return f"{node.name}: no dilation"
    return None


def _divisor(
    windows: list[_Window], outputs: list[int], include_pad: bool, channels: int, dtype: ir.DataType
) -> np.ndarray:
    """[1, C, *outputs]: every channel spelled out, so that onnx2tf transposes it like the sums (seen: a
    [1, 1, ...] divisor permuted wrongly for the broadcast)."""
    counts = np.ones([1, channels], np.int64)
    for window, n in zip(windows, outputs, strict=True):
        counts = counts[..., None] * window.counts(n, include_pad)
    return counts.astype(dtype.numpy())


def _dense(node: ir.Node, windows: list[_Window]) -> dict:
    """Attributes of the pool at stride 1 (TF takes no strides with dilations), the end padded so that
    the last window the node needs fits."""
    ceil_mode = bool(node.attributes.get_int("ceil_mode", 0))
    ends = [w.padded_end(w.outputs(ceil_mode)) for w in windows]
    return {
        "kernel_shape": [w.kernel for w in windows],
        "dilations": [w.dilation for w in windows],
        "pads": [w.begin for w in windows] + ends,
    }


def _every_stride_th(node: ir.Node, windows: list[_Window], dense: ir.Value) -> list[ir.Node]:
    """A Slice taking every stride-th window position of the stride-1 result (no node at stride 1)."""
    if all(w.stride == 1 for w in windows):
        return []
    name, rank = node.name, len(windows)
    ceil_mode = bool(node.attributes.get_int("ceil_mode", 0))
    parameters = [
        int64_constant([0] * rank, f"{name}_starts"),
        int64_constant([(w.outputs(ceil_mode) - 1) * w.stride + 1 for w in windows], f"{name}_ends"),
        int64_constant(list(range(2, 2 + rank)), f"{name}_axes"),
        int64_constant([w.stride for w in windows], f"{name}_steps"),
    ]
    inputs = [dense] + [p.outputs[0] for p in parameters]
    return [*parameters, ir.node("Slice", inputs, name=f"{name}_strided")]


def _channels(model: ir.Model, node: ir.Node) -> list[ir.Node]:
    """The input split into its channels, [] for one channel."""
    x, name = node.inputs[0], node.name
    channels = x.shape[1]
    if channels == 1:
        return []
    if default_opset(model) < 13:
        attributes = {"axis": 1, "split": [1] * channels}
        return [ir.node("Split", [x], attributes=attributes, num_outputs=channels, name=f"{name}_channels")]
    sizes = int64_constant([1] * channels, f"{name}_split")
    split = ir.node(
        "Split", [x, sizes.outputs[0]], attributes={"axis": 1}, num_outputs=channels, name=f"{name}_channels"
    )
    return [sizes, split]


def dilated_average_as_conv(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = _pool(model, finding, ("AveragePool",))
    if isinstance(node, str):
        return node
    problem = _refusal(node)
    if problem:
        return problem
    x, name = node.inputs[0], node.name
    windows, ceil_mode = _windows(node), bool(node.attributes.get_int("ceil_mode", 0))
    outputs = [w.outputs(ceil_mode) for w in windows]
    channels, include_pad = x.shape[1], bool(node.attributes.get_int("count_include_pad", 0))
    divisor = _divisor(windows, outputs, include_pad, channels, x.dtype)
    if not divisor.all():
        return f"{name}: a window holds no element to average"
    ones = np.ones([1, 1, *(w.kernel for w in windows)], x.dtype.numpy())
    kernel = ir.node("Constant", [], attributes={"value": ir.tensor(ones)}, name=f"{name}_kernel")
    split = _channels(model, node)
    parts = split[-1].outputs if split else [x]
    sums = [
        ir.node("Conv", [part, kernel.outputs[0]], attributes=_dense(node, windows), name=f"{name}_sum_{c}")
        for c, part in enumerate(parts)
    ]
    added = [kernel, *split, *sums]
    if len(sums) > 1:
        added.append(
            ir.node("Concat", [s.outputs[0] for s in sums], attributes={"axis": 1}, name=f"{name}_sum")
        )
    added += _every_stride_th(node, windows, added[-1].outputs[0])
    count = ir.node("Constant", [], attributes={"value": ir.tensor(divisor)}, name=f"{name}_count")
    mean = ir.node("Div", [added[-1].outputs[0], count.outputs[0]], name=f"{name}_mean")
    node.graph.insert_before(node, [*added, count, mean])
    replace_node(node, [mean.outputs[0]])
    return None


def strided_dilated_max_as_slice(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = _pool(model, finding, ("MaxPool",))
    if isinstance(node, str):
        return node
    problem = _refusal(node)
    if problem:
        return problem
    if len(node.outputs) > 1:
        return f"{node.name}: it computes Indices too"
    windows = _windows(node)
    if all(w.stride == 1 for w in windows):
        return f"{node.name}: no stride"
    dense = ir.node(
        "MaxPool", [node.inputs[0]], attributes=_dense(node, windows), name=f"{node.name}_stride_1"
    )
    nodes = [dense, *_every_stride_th(node, windows, dense.outputs[0])]
    node.graph.insert_before(node, nodes)
    replace_node(node, [nodes[-1].outputs[0]])
    return None


def ceil_mode_as_end_padding(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type != "MaxPool":
        return "no MaxPool at the finding"
    x = node.inputs[0]
    if not node.attributes.get_int("ceil_mode", 0) or len(node.outputs) > 1 or x.shape is None:
        return "not a single-output ceil_mode MaxPool of known rank"
    if node.attributes.get_string("auto_pad", "NOTSET") != "NOTSET":
        return "auto_pad is set (pool-explicit-pads writes it out first)"
    spatial = len(x.shape) - 2
    kernel = list(node.attributes.get_ints("kernel_shape"))
    strides = int_list(node, "strides", 1, spatial)
    dilations = int_list(node, "dilations", 1, spatial)
    pads = int_list(node, "pads", 0, 2 * spatial)
    reach = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if any(e + s > r for e, s, r in zip(pads[spatial:], strides, reach, strict=True)):
        return "a ceil-mode window could start in the end padding (ONNX drops it)"
    ends = [e + s - 1 for e, s in zip(pads[spatial:], strides, strict=True)]
    all_pads = [0, 0, *pads[:spatial], 0, 0, *ends]
    pad_values = int64_constant(all_pads, f"{node.name}_ceil_pads")
    lowest = ir.node("Constant", [], attributes={"value": ir.tensor(np.array(-np.inf, x.dtype.numpy()))})
    padded = ir.node("Pad", [x, pad_values.outputs[0], lowest.outputs[0]], attributes={"mode": "constant"})
    attributes = {"kernel_shape": kernel, "strides": strides, "dilations": dilations}
    pooled = ir.node("MaxPool", [padded.outputs[0]], attributes=attributes)
    nodes = [pad_values, lowest, padded, pooled]
    node.graph.insert_before(node, nodes)
    replace_node(node, [pooled.outputs[0]])
    return None


RULES = [
    Rule(
        "ceil-mode-as-end-padding",
        ("conversion-error", "divergence"),
        ceil_mode_as_end_padding,
        "ceil_mode MaxPool as a static -inf end padding of stride - 1 and a floor-mode MaxPool",
        ops=("MaxPool",),
    ),
    Rule(
        "pool-explicit-pads",
        ("conversion-error", "divergence"),
        explicit_pads,
        "auto_pad SAME_LOWER/SAME_UPPER as the explicit pads it means (LpPool's as a Pad of zeros)",
        ops=POOLS,
    ),
    Rule(
        "dilated-average-pool-as-conv",
        ("conversion-error", "divergence"),
        dilated_average_as_conv,
        "dilated AveragePool as per-channel Convs of ones at stride 1, a strided Slice, over the counts",
        ops=("AveragePool",),
    ),
    Rule(
        "strided-dilated-max-pool",
        ("conversion-error", "divergence"),
        strided_dilated_max_as_slice,
        "dilated MaxPool with strides as a stride-1 MaxPool and a strided Slice",
        ops=("MaxPool",),
    ),
]
