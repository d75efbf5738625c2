"""LSTM, GRU and RNN over a static number of steps, unrolled into the cell equations with plain ops.

onnx2tf 1.29.24 fails on the recurrent ops when W, R, B are graph inputs (the ONNX node suite):
`'NoneType' object is not subscriptable`, KerasTensors passed to TF functions, an initial state "not
compatible". The spec's equations are MatMul, Add, Mul, Sigmoid and Tanh, which onnx2tf converts: each
step becomes them, in the order of the ONNX reference implementation (x·Wᵀ + h·Rᵀ + (Wb + Rb), then the
gates), and Y, Y_h and Y_c are stacked with Unsqueeze and Concat in the node's layout. W, R, B, P and
the initial states are cut with Gather and Slice at run time, so a graph input stays an input
(constants fold later). An absent B, P or initial state is zero: its terms are left out (adding a zero
changes nothing). Refused: `clip`, `input_forget`, activations other than Sigmoid/Tanh/Relu,
sequence_lens shorter than the sequence on a reverse or bidirectional node (each batch entry would
reverse from its own end) or on an RNN (onnxruntime leaves an empty sequence's state undefined
there, so nothing can be checked), a sequence length that is not static or above MAX_STEPS (a dynamic one
would need a loop, which onnx2tf fails on too). A forward node with sequence_lens (run-time or not)
masks each step as onnxruntime does: past its length a batch entry keeps its states and outputs zeros
(an empty one ends with zero states).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, find_node, optional_input
from convfix.rules import Rule, RuleContext

MAX_STEPS = 256
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
_DEFAULT_ACTIVATIONS = {"LSTM": ("sigmoid", "tanh", "tanh"), "GRU": ("sigmoid", "tanh"), "RNN": ("tanh",)}
_ACTIVATION_OPS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu"}
_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}


class _Builder(Emitter):
    """An Emitter with each constant made once, and the slicing the cell equations need."""

    def __init__(self, model: ir.Model, node: ir.Node) -> None:
        super().__init__(model, node)
        self.constants: dict[tuple[str, tuple[int, ...], bytes], ir.Value] = {}

    def const(self, array: np.ndarray) -> ir.Value:
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self.constants:
            self.constants[key] = super().const(array)
        return self.constants[key]

    def take(self, x: ir.Value, index: int, axis: int) -> ir.Value:
        """x at one index along axis, the axis dropped."""
        return self.op("Gather", [x, self.const(np.array(index, np.int64))], axis=axis)

    def part(self, x: ir.Value, start: int, end: int, axis: int) -> ir.Value:
        """x[start:end] along axis (starts/ends are inputs from opset 10)."""
        if self.opset < 10:
            return self.op("Slice", [x], starts=[start], ends=[end], axes=[axis])
        bounds = [self.const(np.array([v], np.int64)) for v in (start, end, axis)]
        return self.op("Slice", [x, *bounds])

    def concat(self, parts: list[ir.Value], axis: int) -> ir.Value:
        return parts[0] if len(parts) == 1 else self.op("Concat", parts, axis=axis)

    def add(self, x: ir.Value, y: ir.Value | None) -> ir.Value:
        """x + y, or x where the term y is an absent zero."""
        return x if y is None else self.op("Add", [x, y])


@dataclass
class _Direction:
    """One direction's weights, transposed for x @ w, and its initial state; None stands for a zero."""

    w: ir.Value  # Wᵀ [input, gates*hidden]
    r: ir.Value  # Rᵀ [hidden, gates*hidden]; GRU: the z and r gates' columns only
    bias: ir.Value | None  # Wb + Rb, for the gates in r
    activations: tuple[str, ...]
    h: ir.Value | None = None  # [batch, hidden]
    c: ir.Value | None = None
    peepholes: list[ir.Value] | None = None  # LSTM: P's i, o, f parts
    rh: ir.Value | None = None  # GRU: Rhᵀ [hidden, hidden], Wbh, Rbh, and 1 in X's dtype
    wbh: ir.Value | None = None
    rbh: ir.Value | None = None
    one: ir.Value | None = None


def _activations(node: ir.Node, directions: int) -> list[str]:
    attr = node.attributes.get("activations")
    if attr is None:
        return list(_DEFAULT_ACTIVATIONS[node.op_type]) * directions
    return [name.lower() for name in attr.as_strings()]


def _steps(node: ir.Node) -> int | None:
    x = node.inputs[0]
    steps = None if x.shape is None or len(x.shape) != 3 else x.shape[_layout(node)]
    return steps if isinstance(steps, int) else None


def _layout(node: ir.Node) -> int:
    return node.attributes.get_int("layout", 0)


def _hidden_size(node: ir.Node) -> int | None:
    hidden = node.attributes.get_int("hidden_size", 0)
    r = node.inputs[2]
    if not hidden and r.shape is not None and isinstance(r.shape[-1], int):
        hidden = r.shape[-1]
    return hidden or None


def _masking_lens(node: ir.Node, steps: int) -> ir.Value | None:
    """sequence_lens, unless it is absent or a constant equal to the full length (nothing to mask)."""
    lens = optional_input(node, 4)
    tensor = None if lens is None else ir.convenience.get_const_tensor(lens)
    if lens is None or (tensor is not None and (np.asarray(tensor.numpy()) == steps).all()):
        return None
    return lens


def _sequence_lens_refused(node: ir.Node, steps: int) -> str | None:
    if _masking_lens(node, steps) is None:
        return None
    if node.attributes.get_string("direction", "forward") != "forward":
        return "sequence_lens shorter than the sequence on a reverse or bidirectional node: not unrolled"
    if node.op_type == "RNN":  # seen: Y_h of an empty sequence differs from run to run
        return "sequence_lens on an RNN: onnxruntime's RNN leaves an empty sequence's state undefined"
    return None


def _refused(node: ir.Node) -> str | None:
    """Why the node is not unrolled, or None."""
    direction = node.attributes.get_string("direction", "forward")
    if direction not in _DIRECTIONS:
        return f"unknown direction {direction!r}"
    for name in ("clip", "activation_alpha", "activation_beta"):
        if name in node.attributes:
            return f"{name} is given: only unclipped Sigmoid, Tanh and Relu cells are unrolled"
    if node.attributes.get_int("input_forget", 0):
        return "input_forget=1 (input and forget gates coupled) is not unrolled"
    names = _activations(node, len(_DIRECTIONS[direction]))
    if len(names) != len(_DEFAULT_ACTIVATIONS[node.op_type]) * len(_DIRECTIONS[direction]):
        return f"{len(names)} activations for a {direction} {node.op_type}"
    unknown = sorted(set(names) - set(_ACTIVATION_OPS))
    if unknown:
        return f"activations {unknown} are not unrolled (only Sigmoid, Tanh and Relu)"
    if _hidden_size(node) is None:
        return "hidden_size is unknown"
    steps = _steps(node)
    if steps is None:
        return "the sequence length (X's sequence dim) is not static"
    if not 1 <= steps <= MAX_STEPS:
        return f"{steps} steps: only 1 to {MAX_STEPS} are unrolled"
    return _sequence_lens_refused(node, steps)


def _initial(b: _Builder, state: ir.Value | None, d: int, layout: int) -> ir.Value | None:
    """Direction d's initial state [batch, hidden], from [dirs, batch, hidden] (layout 1: batch first)."""
    return None if state is None else b.take(state, d, layout)


def _direction(b: _Builder, node: ir.Node, d: int, hidden: int, activations: Sequence[str]) -> _Direction:
    """Direction d's slices of W, R, B, P and the initial states, cut at run time."""
    gates = _GATES[node.op_type] * hidden
    w, r = (b.op("Transpose", [b.take(node.inputs[k], d, 0)], perm=[1, 0]) for k in (1, 2))
    wb = rb = None
    if (bias := optional_input(node, 3)) is not None:
        both = b.take(bias, d, 0)
        wb, rb = b.part(both, 0, gates, 0), b.part(both, gates, 2 * gates, 0)
    summed = gates if node.op_type != "GRU" else 2 * hidden
    direction = _Direction(
        w=w,
        r=r if node.op_type != "GRU" else b.part(r, 0, summed, 1),
        bias=None if wb is None else b.op("Add", [b.part(wb, 0, summed, 0), b.part(rb, 0, summed, 0)]),
        activations=tuple(_ACTIVATION_OPS[a] for a in activations),
    )
    direction.h = _initial(b, optional_input(node, 5), d, _layout(node))
    if node.op_type == "LSTM":
        direction.c = _initial(b, optional_input(node, 6), d, _layout(node))
    if node.op_type == "LSTM" and (peepholes := optional_input(node, 7)) is not None:
        p = b.take(peepholes, d, 0)
        direction.peepholes = [b.part(p, k * hidden, (k + 1) * hidden, 0) for k in range(3)]
    if node.op_type == "GRU":
        direction.rh = b.part(r, 2 * hidden, gates, 1)
        direction.one = b.const(np.array(1, node.inputs[0].dtype.numpy()))
        if wb is not None:
            direction.wbh, direction.rbh = b.part(wb, 2 * hidden, gates, 0), b.part(rb, 2 * hidden, gates, 0)
    return direction


def _affine(b: _Builder, d: _Direction, x: ir.Value, h: ir.Value | None) -> ir.Value:
    """x·Wᵀ + h·Rᵀ + (Wb + Rb), in the reference's order (absent zeros left out)."""
    xw = b.op("MatMul", [x, d.w])
    return b.add(b.add(xw, None if h is None else b.op("MatMul", [h, d.r])), d.bias)


def _lstm_step(
    b: _Builder, d: _Direction, x: ir.Value, h: ir.Value | None, c: ir.Value | None, hidden: int
) -> tuple[ir.Value, ir.Value]:
    f, g, act_h = d.activations
    gates = _affine(b, d, x, h)
    i, o, forget, cell = (b.part(gates, k * hidden, (k + 1) * hidden, 1) for k in range(4))
    if d.peepholes is not None and c is not None:
        i = b.op("Add", [i, b.op("Mul", [d.peepholes[0], c])])
        forget = b.op("Add", [forget, b.op("Mul", [d.peepholes[2], c])])
    i, forget, cell = b.op(f, [i]), b.op(f, [forget]), b.op(g, [cell])
    new_c = b.op("Mul", [i, cell])
    if c is not None:
        new_c = b.op("Add", [b.op("Mul", [forget, c]), new_c])
    if d.peepholes is not None:
        o = b.op("Add", [o, b.op("Mul", [d.peepholes[1], new_c])])
    return b.op("Mul", [b.op(f, [o]), b.op(act_h, [new_c])]), new_c


def _gru_candidate(
    b: _Builder, d: _Direction, xh: ir.Value, r: ir.Value, h: ir.Value | None, linear: bool
) -> ir.Value:
    """The candidate state before g: the reset gate applied before Rh (default) or after it."""
    if not linear:
        recurrent = None if h is None else b.op("MatMul", [b.op("Mul", [r, h]), d.rh])
        return b.add(b.add(b.add(xh, recurrent), d.wbh), d.rbh)
    recurrent = d.rbh if h is None else b.add(b.op("MatMul", [h, d.rh]), d.rbh)
    return b.add(b.add(xh, None if recurrent is None else b.op("Mul", [r, recurrent])), d.wbh)


def _gru_step(
    b: _Builder, d: _Direction, x: ir.Value, h: ir.Value | None, hidden: int, linear: bool
) -> ir.Value:
    f, g = d.activations
    xw = b.op("MatMul", [x, d.w])
    zr = b.part(xw, 0, 2 * hidden, 1)
    zr = b.op(f, [b.add(b.add(zr, None if h is None else b.op("MatMul", [h, d.r])), d.bias)])
    z, r = b.part(zr, 0, hidden, 1), b.part(zr, hidden, 2 * hidden, 1)
    candidate = _gru_candidate(b, d, b.part(xw, 2 * hidden, 3 * hidden, 1), r, h, linear)
    new_h = b.op("Mul", [b.op("Sub", [d.one, z]), b.op(g, [candidate])])
    return b.add(new_h, None if h is None else b.op("Mul", [z, h]))


def _step(
    b: _Builder, node: ir.Node, d: _Direction, x: ir.Value, state: tuple[ir.Value | None, ir.Value | None]
) -> tuple[ir.Value, ir.Value | None]:
    """One time step of direction d: the new hidden state (and cell state for LSTM)."""
    (h, c), hidden = state, _hidden_size(node)
    if node.op_type == "LSTM":
        return _lstm_step(b, d, x, h, c, hidden)
    if node.op_type == "GRU":
        return _gru_step(b, d, x, h, hidden, bool(node.attributes.get_int("linear_before_reset", 0))), None
    (f,) = d.activations
    return b.op(f, [_affine(b, d, x, h)]), None


def _outputs(
    b: _Builder, node: ir.Node, ys: list[list[ir.Value]], finals: list[tuple[ir.Value, ir.Value | None]]
) -> list[ir.Value]:
    """Y [seq, dirs, batch, hidden] and Y_h, Y_c [dirs, batch, hidden] (layout 1: batch first), for
    the outputs in use; an unused output stands for itself."""
    layout = _layout(node)
    values = list(node.outputs)
    used = [bool(v.uses()) or v.is_graph_output() for v in values]
    if used[0]:
        stacked = [
            b.concat([b.with_axes("Unsqueeze", h, [layout, layout + 1]) for h in hs], layout) for hs in ys
        ]
        values[0] = b.concat(stacked, layout + 1)
    for k in range(1, len(values)):
        if used[k]:
            values[k] = b.concat(
                [b.with_axes("Unsqueeze", final[k - 1], [layout]) for final in finals], layout
            )
    return values


def unroll_recurrent(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type not in _GATES or node.domain not in ("", "ai.onnx"):
        return "not an LSTM, GRU or RNN node"
    reason = _refused(node)
    if reason is not None:
        return reason
    backwards = _DIRECTIONS[node.attributes.get_string("direction", "forward")]
    names, count = _activations(node, len(backwards)), len(_DEFAULT_ACTIVATIONS[node.op_type])
    b = _Builder(model, node)
    xs = [b.take(node.inputs[0], t, _layout(node)) for t in range(_steps(node))]
    lens = _masking_lens(node, len(xs))
    lens = None if lens is None else b.with_axes("Unsqueeze", b.op("Cast", [lens], to=ir.DataType.INT64), [1])
    zero = b.const(np.array(0, node.inputs[0].dtype.numpy()))
    ys, finals = [], []
    for d, backward in enumerate(backwards):
        weights = _direction(b, node, d, _hidden_size(node), names[d * count : (d + 1) * count])
        state, hs = (weights.h, weights.c), []
        for t, x in enumerate(xs[::-1] if backward else xs):
            new = _step(b, node, weights, x, state)
            if lens is None:
                state = new
                hs.append(state[0])
                continue
            running = b.op("Less", [b.const(np.array(t, np.int64)), lens])
            state = tuple(
                None if n is None else b.op("Where", [running, n, zero if p is None else p])
                for n, p in zip(new, state, strict=True)
            )
            hs.append(b.op("Where", [running, new[0], zero]))
        ys.append(hs[::-1] if backward else hs)
        if lens is not None:  # onnxruntime gives an empty sequence zero states, not the initial ones
            started = b.op("Greater", [lens, b.const(np.array(0, np.int64))])
            state = tuple(None if v is None else b.op("Where", [started, v, zero]) for v in state)
        finals.append(state)
    b.replace(_outputs(b, node, ys, finals))
    return None


RULES = [
    Rule(
        "unroll-recurrent",
        ("conversion-error", "divergence"),
        unroll_recurrent,
        f"LSTM, GRU, RNN over a static sequence (at most {MAX_STEPS} steps) as the cell equations per step",
        ops=tuple(_GATES),
    )
]
