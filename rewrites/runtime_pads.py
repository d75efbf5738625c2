"""Pad whose pads (or axes) are a run-time input (onnx2tf turns them into a Python list: "setting an
array element with a sequence"), as one Gather per padded axis of the indices each mode reads,
computed in the graph from the pads it is given: the pads stay an input and any value of them works,
negative ones (crops) too. Output position j of an axis of length n reads the input at s = j - begin:

- edge: clip(s, 0, n - 1); wrap: s mod n; reflect: (n - 1) - |(s mod 2(n - 1)) - (n - 1)| (0 if n = 1);
- constant: clip(s, 0, n - 1), then Where(0 <= s < n, read, constant_value).

Axes (opset 18), constant or run-time, select which dims the pads are for. Needs the data's dims
static (each Range needs its length) and the number of axes. Exact.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, computed_at_run_time, constant_input_ints, standard_node
from convfix.rules import Rule, RuleContext

INT64 = ir.DataType.INT64
MODES = ("constant", "edge", "reflect", "wrap")


def runtime_pads(node: ir.Node) -> bool:
    """A Pad (opset 11+ form) whose pads or axes input is computed at run time."""
    return any(
        value is not None and computed_at_run_time(value)
        for value in (
            node.inputs[1] if len(node.inputs) > 1 else None,
            node.inputs[3] if len(node.inputs) > 3 else None,
        )
    )


def _read(b: Emitter, source: ir.Value, length: int, mode: str) -> ir.Value:
    """The input index each output position reads, per mode (source may be any int64)."""
    if mode == "wrap":
        return b.op("Mod", [source, b.ints([length])])
    if mode == "reflect" and length > 1:
        period = b.ints([2 * (length - 1)])
        folded = b.op("Mod", [source, period])  # integer Mod takes the divisor's sign: in [0, period)
        return b.op("Sub", [b.ints([length - 1]), b.op("Abs", [b.op("Sub", [folded, b.ints([length - 1])])])])
    return b.op("Max", [b.op("Min", [source, b.ints([length - 1])]), b.ints([0])])


def _spread(b: Emitter, axes: ir.Value, pads: ir.Value, rank: int) -> tuple[ir.Value, ir.Value] | None:
    """Begin and end pads for every dim [rank] from pads over run-time axes (0 where none names it)."""
    count = axes.shape[0] if axes.shape is not None and len(axes.shape) == 1 else None
    if not isinstance(count, int):
        return None
    named = b.from_the_end(b.op("Cast", [axes], to=INT64.value), rank)
    onehot = b.op(
        "Cast",
        [b.op("Equal", [b.op("Unsqueeze", [named, b.ints([1])]), b.const(np.arange(rank)[None, :])])],
        to=INT64.value,
    )  # [count, rank]

    def spread(part: ir.Value) -> ir.Value:
        spread_out = b.op("Mul", [onehot, b.op("Unsqueeze", [part, b.ints([1])])])
        return b.op("ReduceSum", [spread_out, b.ints([0])], keepdims=0)

    begins = b.op("Slice", [pads, b.ints([0]), b.ints([count])])
    return spread(begins), spread(b.op("Slice", [pads, b.ints([count]), b.ints([2 * count])]))


def pad_runtime_pads(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Pad")
    if node is None or not runtime_pads(node):
        return "not a Pad with run-time pads or axes"
    data, pads = node.inputs[0], node.inputs[1]
    value = node.inputs[2] if len(node.inputs) > 2 else None
    mode = node.attributes.get_string("mode", "constant")
    if mode not in MODES:
        return f"mode {mode!r} is not one of {', '.join(MODES)}"
    if data.dtype is None or data.shape is None or not all(isinstance(d, int) for d in data.shape):
        return "the data's dtype and dims must be known"
    rank = len(data.shape)
    b = Emitter(model, node)
    pads = b.op("Cast", [pads], to=INT64.value)
    given = node.inputs[3] if len(node.inputs) > 3 else None
    if given is None:
        axes, begins, ends = (
            list(range(rank)),
            pads,
            b.op("Slice", [pads, b.ints([rank]), b.ints([2 * rank])]),
        )
    elif constant_input_ints(node, 3) is not None:
        axes = [axis + rank if axis < 0 else axis for axis in constant_input_ints(node, 3)]
        count = len(axes)
        begins, ends = pads, b.op("Slice", [pads, b.ints([count]), b.ints([2 * count])])
    else:
        spread = _spread(b, given, pads, rank)
        if spread is None:
            return "the number of run-time axes is unknown"
        axes, (begins, ends) = list(range(rank)), spread
    result = data
    for position, axis in enumerate(axes):
        length = data.shape[axis]
        begin = b.op("Slice", [begins, b.ints([position]), b.ints([position + 1])])
        end = b.op("Slice", [ends, b.ints([position]), b.ints([position + 1])])
        total = b.op("Add", [b.op("Add", [begin, end]), b.ints([length])])
        scalar = b.op("Squeeze", [total, b.ints([0])])
        positions = b.op("Range", [b.const(np.array(0, np.int64)), scalar, b.const(np.array(1, np.int64))])
        source = b.op("Sub", [positions, begin])
        result = b.op("Gather", [result, _read(b, source, length, mode)], axis=axis)
        if mode == "constant":
            inside = b.op(
                "And",
                [
                    b.op("GreaterOrEqual", [source, b.ints([0])]),
                    b.op("Less", [source, b.ints([length])]),
                ],
            )
            shape = [1] * rank
            shape[axis] = -1
            fill = value if value is not None else b.const(np.zeros((), data.dtype.numpy()))
            result = b.op("Where", [b.op("Reshape", [inside, b.ints(shape)]), result, fill])
    b.replace([result])
    return None


RULES = [
    Rule(
        "pad-runtime-pads",
        ("unsupported-op", "conversion-error", "divergence"),
        pad_runtime_pads,
        "Pad with run-time pads as a Gather per axis of the indices its mode reads (edge, reflect, "
        "wrap; constant with a Where), computed in the graph from the pads",
        ops=("Pad",),
    )
]
