"""`Loop` and `Scan` with a static trip count, unrolled into straight-line ops.

onnx2tf 1.29.24 fails on Loop (a `KeyError` on outer-scope values, `NotImplementedError` in its Loop op,
`OperatorNotAllowedInGraphError`). A Loop whose trip count is a constant and whose condition provably
stays true runs exactly that many iterations; a Scan runs as many as its scan inputs' static length.
Each iteration becomes a copy of the body (`Graph.clone`: nested subgraphs copied, outer-scope values
shared) bound to the iteration number or slices and the values carried from the iteration before;
scan outputs are stacked with Unsqueeze and Concat. Exact: the same ops on the same values.

A Python list appended to in a scripted loop is a sequence (SequenceEmpty, SequenceInsert,
ConcatFromSequence), which onnx2tf also fails on (`IndexError` in SequenceInsert); once the loop is
unrolled the list's tensors are known, and its ConcatFromSequence becomes a Concat of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import constant_array, find_node, int64_constant, int_list, replace_node
from convfix.rules import Rule, RuleContext

MAX_TRIPS = 64
SEQUENCE_OPS = ("SequenceEmpty", "SequenceConstruct", "SequenceInsert", "ConcatFromSequence")


def _trips_refused(trips: int) -> str | None:
    if trips < 1:
        return f"{trips} iterations: the shapes of empty scan outputs cannot be known"
    if trips > MAX_TRIPS:
        return f"{trips} iterations: more than {MAX_TRIPS} are not unrolled"
    return None


def _own_outputs(body: ir.Graph) -> None:
    """Pass body outputs read from an enclosing graph through an Identity (a clone defines its outputs)."""
    for index, value in enumerate(body.outputs):
        if value.graph is not body:
            identity = ir.node("Identity", [value])
            body.append(identity)
            identity.outputs[0].dtype, identity.outputs[0].shape = value.dtype, value.shape
            body.outputs[index] = identity.outputs[0]


def _rename(node: ir.Node, prefix: str) -> None:
    node.name = f"{prefix}{node.name}"
    for value in node.outputs:
        value.name = f"{prefix}{value.name}"


def _inline_iteration(
    node: ir.Node, body: ir.Graph, inputs: Sequence[ir.Value], prefix: str
) -> list[ir.Value]:
    """A copy of body, its inputs bound to `inputs`, placed before node; returns the copy's outputs."""
    copy = body.clone(allow_outer_scope_values=True)
    outputs = list(copy.outputs)
    copy.outputs.clear()
    bound = dict(zip(copy.inputs, inputs, strict=True))
    for inner, outer in bound.items():
        inner.replace_all_uses_with(outer)
    graph = node.graph
    for value in list(copy.initializers.values()):
        copy.initializers.pop(value.name)
        value.name = f"{prefix}{value.name}"
        graph.register_initializer(value)
    for inner in ir.traversal.RecursiveGraphIterator(copy):
        _rename(inner, prefix)
    for inner in list(copy):
        copy.remove(inner)
        graph.insert_before(node, inner)
    return [bound.get(value, value) for value in outputs]


def _insert(before: ir.Node, new: ir.Node) -> ir.Value:
    before.graph.insert_before(before, new)
    return new.outputs[0]


def _constant_like(declared: ir.Value, value: np.ndarray, name: str, before: ir.Node) -> ir.Value:
    """A Constant of the rank the body declares: runtimes pass a [1]-shaped scalar where it says so."""
    rank_one = declared.shape is not None and len(declared.shape) == 1
    tensor = ir.tensor(value.reshape((1,) if rank_one else ()))
    return _insert(before, ir.node("Constant", [], attributes={"value": tensor}, name=name))


def _unsqueeze(model: ir.Model, node: ir.Node, part: ir.Value, axis: int, name: str) -> ir.Value:
    """part with a new axis (axes is an input from opset 13 on, an attribute before)."""
    if model.opset_imports.get("", 1) >= 13:
        axes = _insert(node, int64_constant([axis], f"{name}_axes"))
        return _insert(node, ir.node("Unsqueeze", [part, axes], name=name))
    return _insert(node, ir.node("Unsqueeze", [part], attributes={"axes": [axis]}, name=name))


def _stack(model: ir.Model, node: ir.Node, parts: Sequence[ir.Value], axis: int, name: str) -> ir.Value:
    """The parts stacked along a new axis (non-negative): Unsqueeze each, then Concat."""
    unsqueezed = [
        _unsqueeze(model, node, part, axis, f"{name}_unsqueeze_{i}") for i, part in enumerate(parts)
    ]
    stacked = _insert(node, ir.node("Concat", unsqueezed, attributes={"axis": axis}, name=f"{name}_concat"))
    part = parts[0]
    stacked.dtype = part.dtype
    if part.shape is not None:
        stacked.shape = ir.Shape([*part.shape[:axis], len(parts), *part.shape[axis:]])
    return stacked


def _through_identities(value: ir.Value) -> ir.Value:
    while (
        (producer := value.producer()) is not None
        and producer.op_type == "Identity"
        and producer.domain == ""
    ):
        value = producer.inputs[0]
    return value


def _runs_every_trip(node: ir.Node, body: ir.Graph) -> str | None:
    """Why the Loop may stop before its trip count (None when its condition provably stays true)."""
    condition = node.inputs[1] if len(node.inputs) > 1 else None
    initial = constant_array(condition)
    if condition is not None and (initial is None or not initial.all()):
        return "the initial condition is not a constant true"
    source = _through_identities(body.outputs[0])
    stays = constant_array(source)
    if source is not body.inputs[1] and (stays is None or not stays.all()):
        return "the body's condition may turn false: the loop may stop early"
    return None


def unroll_loop(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "Loop":
        return "not a Loop node"
    body = node.attributes["body"].as_graph()
    trips = constant_array(node.inputs[0] if node.inputs else None)
    if trips is None:
        return "the trip count is absent or not a constant"
    reason = _runs_every_trip(node, body) or _trips_refused(int(trips.item()))
    if reason is not None:
        return reason
    _own_outputs(body)
    condition = node.inputs[1] if len(node.inputs) > 1 else None
    if condition is None:
        condition = _constant_like(body.inputs[1], np.array(True), f"{node.name}_cond", node)
    carried = [condition, *node.inputs[2:]]
    scans: list[list[ir.Value]] = [[] for _ in body.outputs[len(carried) :]]
    for i in range(int(trips.item())):
        iteration = _constant_like(body.inputs[0], np.array(i, np.int64), f"{node.name}_{i}_iteration", node)
        outputs = _inline_iteration(node, body, [iteration, *carried], f"{node.name}_{i}_")
        carried = outputs[: len(carried)]
        for parts, value in zip(scans, outputs[len(carried) :], strict=True):
            parts.append(value)
    stacked = [_stack(model, node, parts, 0, f"{node.name}_scan_{k}") for k, parts in enumerate(scans)]
    replace_node(node, [*carried[1:], *stacked])
    return None


def _axis(axis: int, shape: ir.Shape | None, extra: int = 0) -> int | None:
    """The axis made non-negative against rank(shape) + extra, or None if that rank is unknown."""
    if axis >= 0:
        return axis
    return None if shape is None else axis + len(shape) + extra


def _scan_length(sequences: Sequence[ir.Value], axes: Sequence[int | None]) -> int | None:
    """The scan inputs' common static length along their axes, if there is one."""
    lengths = {
        x.shape[axis] if x.shape is not None and axis is not None and axis < len(x.shape) else None
        for x, axis in zip(sequences, axes, strict=True)
    }
    length = lengths.pop() if len(lengths) == 1 else None
    return length if isinstance(length, int) else None


def _slices(
    node: ir.Node,
    sequences: Sequence[ir.Value],
    axes: Sequence[int],
    reverse: Sequence[int],
    step: int,
    length: int,
) -> list[ir.Value]:
    """Iteration step's slice of each scan input: a Gather of one index, which drops the axis."""
    slices = []
    for j, (x, axis, backwards) in enumerate(zip(sequences, axes, reverse, strict=True)):
        name = f"{node.name}_{step}_slice_{j}"
        index = _insert(node, int64_constant(length - 1 - step if backwards else step, f"{name}_index"))
        slices.append(_insert(node, ir.node("Gather", [x, index], attributes={"axis": axis}, name=name)))
    return slices


def unroll_scan(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.op_type != "Scan":
        return "not a Scan node"
    if model.opset_imports.get("", 1) < 9:
        return "Scan before opset 9 has a batch axis: not unrolled"
    body = node.attributes["body"].as_graph()
    count = node.attributes["num_scan_inputs"].as_int()
    states, sequences = list(node.inputs[:-count]), list(node.inputs[-count:])
    in_axes = [
        _axis(a, x.shape) for a, x in zip(int_list(node, "scan_input_axes", 0, count), sequences, strict=True)
    ]
    length = _scan_length(sequences, in_axes)
    if length is None:
        return "the scan inputs' length along the scan axis is not static"
    outputs = body.outputs[len(states) :]
    out_axes = [
        _axis(a, v.shape, 1)
        for a, v in zip(int_list(node, "scan_output_axes", 0, len(outputs)), outputs, strict=True)
    ]
    if None in out_axes:
        return "a scan output's axis is negative and its rank unknown"
    reason = _trips_refused(length)
    if reason is not None:
        return reason
    _own_outputs(body)
    reverse_in = int_list(node, "scan_input_directions", 0, count)
    scans: list[list[ir.Value]] = [[] for _ in outputs]
    for step in range(length):
        slices = _slices(node, sequences, in_axes, reverse_in, step, length)
        values = _inline_iteration(node, body, [*states, *slices], f"{node.name}_{step}_")
        states = values[: len(states)]
        for parts, value in zip(scans, values[len(states) :], strict=True):
            parts.append(value)
    reverse_out = int_list(node, "scan_output_directions", 0, len(outputs))
    stacked = [
        _stack(model, node, parts[::-1] if backwards else parts, axis, f"{node.name}_scan_{k}")
        for k, (parts, axis, backwards) in enumerate(zip(scans, out_axes, reverse_out, strict=True))
    ]
    replace_node(node, [*states, *stacked])
    return None


def _appended(sequence: ir.Value) -> list[ir.Value] | None:
    """The tensors a sequence holds when it is built by appending to an empty or constructed one."""
    tensors = []
    while (producer := sequence.producer()) is not None and producer.op_type == "SequenceInsert":
        if len(producer.inputs) > 2 and producer.inputs[2] is not None:
            return None
        tensors.append(producer.inputs[1])
        sequence = producer.inputs[0]
    if producer is None or producer.op_type not in ("SequenceEmpty", "SequenceConstruct"):
        return None
    return [*producer.inputs, *tensors[::-1]] or None


def _concat_sequence(model: ir.Model, node: ir.Node, tensors: list[ir.Value]) -> ir.Value | None:
    """The node over known tensors as a Concat (new_axis=1: Unsqueeze first); None if the axis is unknown."""
    axis = node.attributes["axis"].as_int()
    new_axis = node.attributes.get_int("new_axis", 0) == 1
    if not new_axis:
        concat = ir.node("Concat", tensors, attributes={"axis": axis}, name=f"{node.name}_concat")
        return _insert(node, concat)
    axis = _axis(axis, tensors[0].shape, 1)
    return None if axis is None else _stack(model, node, tensors, axis, node.name)


def stack_sequence(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every ConcatFromSequence of a sequence built by appends (a Python list in an unrolled loop)."""
    nodes = [n for n, _ in walk(model.graph) if n.op_type == "ConcatFromSequence" and n.domain == ""]
    stacked = 0
    for node in nodes:
        tensors = _appended(node.inputs[0])
        value = None if tensors is None else _concat_sequence(model, node, tensors)
        if value is not None:
            replace_node(node, [value])
            stacked += 1
    return None if stacked else "no ConcatFromSequence of a sequence built by appends with a known axis"


KINDS = ("control-flow", "conversion-error", "divergence")
RULES = [
    Rule(
        "unroll-loop",
        KINDS,
        unroll_loop,
        f"a Loop with a constant trip count (at most {MAX_TRIPS}) and a condition that stays true, unrolled",
        ops=("Loop",),
    ),
    Rule(
        "unroll-scan",
        KINDS,
        unroll_scan,
        f"a Scan over inputs of static length (at most {MAX_TRIPS}), unrolled with a Gather per slice",
        ops=("Scan",),
    ),
    Rule(
        "stack-sequence",
        ("conversion-error", "divergence"),
        stack_sequence,
        "a ConcatFromSequence of a sequence built by SequenceInsert appends, as a Concat of the tensors",
        ops=SEQUENCE_OPS,
    ),
]
