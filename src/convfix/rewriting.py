"""Helpers for writing rules: find the finding's node, make constants, put new values in a node's place."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk


def find_node(model: ir.Model, finding: Finding) -> ir.Node | None:
    """The node a finding names (in its subgraph path), or None."""
    return next(
        (n for n, path in walk(model.graph) if n.name == finding.node and path == finding.path),
        None,
    )


def _take_type(new: ir.Value, old: ir.Value) -> None:
    """What old's type says and new's does not; an unknown dtype is never written (onnx_ir would
    hold a tensor type without an element type, which it cannot serialize)."""
    if new.dtype is None and old.dtype is not None:
        new.dtype = old.dtype
    if new.shape is None and old.shape is not None:
        new.shape = old.shape


def take_output_place(graph: ir.Graph, old: ir.Value, new: ir.Value) -> None:
    """`new` stands where the graph output `old` stood, under its name (old is renamed)."""
    new.name, old.name = old.name, f"{old.name}__replaced"
    graph.outputs[graph.outputs.index(old)] = new


def replace_node(node: ir.Node, values: list[ir.Value]) -> None:
    """Make every use of node's outputs use `values` instead, then remove node.

    A graph output keeps its name: the new value takes it, or, when the new value cannot (a graph
    input, a weight, an outer-scope value, another output), an Identity named after it passes it on.
    New values without type information take the old ones'.
    """
    graph = node.graph
    for old, new in zip(node.outputs, values, strict=True):
        _take_type(new, old)
        if old.is_graph_output():
            producer = new.producer()
            if producer is None or producer.graph is not graph or new.is_graph_output():
                identity = ir.node("Identity", [new], name=f"{node.name}_out_{old.name}")
                graph.insert_before(node, identity)
                new = identity.outputs[0]
                _take_type(new, old)
            take_output_place(graph, old, new)
        old.replace_all_uses_with(new)
    graph.remove(node, safe=True)


def splice(model: ir.Model, node: ir.Node, piece: ir.Model, feeds: Sequence[ir.Value]) -> None:
    """Put the graph of `piece` in node's place: its inputs fed by `feeds`, its outputs standing for
    node's outputs, its weights made Constant nodes; names prefixed with node's, so that nothing
    clashes. The opsets and functions the piece uses are added to the model (its default opset must
    be the model's)."""
    inner = piece.graph
    prefix = f"{node.name}/"
    stands_for: dict[int, ir.Value] = {}  # an inner input or weight -> what replaces it
    constants = []
    for name, weight in list(inner.initializers.items()):
        inner.initializers.pop(name)
        constant = ir.node("Constant", [], attributes={"value": weight.const_value}, name=name)
        constant.outputs[0].name = name
        constant.outputs[0].dtype, constant.outputs[0].shape = weight.dtype, weight.shape
        weight.replace_all_uses_with(constant.outputs[0], replace_graph_outputs=True)
        stands_for[id(weight)] = constant.outputs[0]
        constants.append(constant)
    for value, feed in zip(inner.inputs, feeds, strict=True):
        value.replace_all_uses_with(feed, replace_graph_outputs=True)
        stands_for[id(value)] = feed
    outputs = [stands_for.get(id(value), value) for value in inner.outputs]
    moved = list(inner)
    inner.outputs.clear()
    inner.remove(moved)
    for index, each in enumerate((*constants, *moved)):
        each.name = f"{prefix}{each.name or f'{each.op_type}_{index}'}"
        for number, value in enumerate(each.outputs):
            value.name = f"{prefix}{value.name or f'{each.name}_{number}'}"
    node.graph.insert_before(node, [*constants, *moved])
    for domain, version in piece.opset_imports.items():
        model.opset_imports.setdefault(domain, version)
    model.functions.update(piece.functions)
    replace_node(node, outputs)


def optional_input(node: ir.Node, index: int) -> ir.Value | None:
    """The node's input at index, or None where it has fewer (an omitted optional input)."""
    return node.inputs[index] if len(node.inputs) > index else None


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """A constant value's array (an initializer or a Constant node's), or None if it is computed at
    run time or absent."""
    tensor = None if value is None else ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def int64_constant(values: list[int] | int, name: str) -> ir.Node:
    """A Constant node holding int64 values (indices, axes, shapes)."""
    return ir.node("Constant", [], attributes={"value": ir.tensor(np.array(values, np.int64))}, name=name)


def default_opset(model: ir.Model) -> int:
    """The model's default-domain opset version (18 if it imports none)."""
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 18))


def upgrade_opset(model: ir.Model, version: int) -> str | None:
    """Move the whole model to default-domain opset `version` with onnx's version converter, in place;
    the reason it cannot, or None. For rules whose spelling needs ops newer than the model's opset."""
    import onnx.version_converter

    try:
        proto = onnx.version_converter.convert_version(ir.to_proto(model), version)
    except Exception as exc:  # noqa: BLE001 - the converter raises anything; its message is the reason
        return f"onnx's version converter cannot move the model to opset {version}: {exc}"
    converted = ir.from_proto(proto)
    model.graph = converted.graph
    model.ir_version = converted.ir_version
    return None


def standard_node(model: ir.Model, finding: Finding, op_type: str) -> ir.Node | None:
    """The finding's node if it is the default-domain op_type, else None."""
    node = find_node(model, finding)
    return node if node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx") else None


def contrib_node(
    model: ir.Model, finding: Finding, op_type: str, domains: tuple[str, ...] = ("com.microsoft",)
) -> ir.Node | None:
    """The finding's node if it is op_type of one of `domains` (onnxruntime's contrib ops), else None."""
    node = find_node(model, finding)
    return node if node is not None and node.op_type == op_type and node.domain in domains else None


def constant_input_ints(node: ir.Node, index: int) -> list[int] | None:
    """The node's input `index` as a list of ints if it is a constant; None if absent or computed."""
    value = node.inputs[index] if len(node.inputs) > index else None
    tensor = None if value is None else ir.convenience.get_const_tensor(value)
    return None if tensor is None else [int(v) for v in tensor.numpy().reshape(-1)]


def int_list(node: ir.Node, name: str, default: int, count: int) -> list[int]:
    """An ints attribute (kernel_shape, strides, pads, axes...), or `count` times the default."""
    return list(node.attributes.get_ints(name, [default] * count))


# The opset from which these ops take their axes as an input rather than an attribute.
_AXES_INPUT_FROM = {"ReduceSum": 13, "Squeeze": 13, "Unsqueeze": 13}


class Emitter:
    """Builds the nodes that replace one node: named after it, written for the model's opset."""

    def __init__(self, model: ir.Model, node: ir.Node) -> None:
        self.tape = ir.tape.Tape()
        self.node = node
        self.opset = default_opset(model)

    def op(self, op_type: str, inputs: list[ir.Value | None], **attributes) -> ir.Value:
        name = f"{self.node.name}_{op_type}_{len(self.tape.nodes)}"
        return self.tape.op(op_type, inputs, attributes or None, name=name)

    def const(self, array: np.ndarray) -> ir.Value:
        return self.op("Constant", [], value=ir.tensor(np.asarray(array)))

    def ints(self, values: list[int]) -> ir.Value:
        """An int64 constant (shapes, indices, axes)."""
        return self.const(np.array(values, np.int64))

    def with_axes(self, op_type: str, x: ir.Value, axes: list[int], **attributes) -> ir.Value:
        """Reduce*, Squeeze or Unsqueeze over constant axes: an input or an attribute, by opset."""
        if self.opset >= _AXES_INPUT_FROM.get(op_type, 18):
            return self.op(op_type, [x, self.const(np.array(axes, np.int64))], **attributes)
        return self.op(op_type, [x], axes=axes, **attributes)

    def from_the_end(self, index: ir.Value, length, dtype=np.int64) -> ir.Value:
        """index + length where index is negative: ONNX's counting from the end of a dim. `length` is
        a value, or numbers (one per element of index, broadcast) made a constant of `dtype`."""
        if not isinstance(length, ir.Value):
            length = self.const(np.array(length, dtype))
        negative = self.op("Less", [index, self.const(np.array(0, dtype))])
        return self.op("Where", [negative, self.op("Add", [index, length]), index])

    def replace(self, values: list[ir.Value]) -> None:
        """Insert what was built before the node, then put values in its place."""
        self.insert()
        replace_node(self.node, values)

    def insert(self) -> None:
        """Insert what was built before the node. A built node whose name the graph already holds is
        renamed (a node named `node`, as normalize names an unnamed one, met `node_Cast_13` from the
        onnxscript rewriter, and onnxruntime refuses the model)."""
        taken = {n.name for n in self.node.graph}
        for built in self.tape.nodes:
            name, count = built.name, 1
            while name in taken:
                name, count = f"{built.name}_{count}", count + 1
            built.name = name
            taken.add(name)
        self.node.graph.insert_before(self.node, self.tape.nodes)


def computed_at_run_time(value: ir.Value, limit: int = 32) -> bool:
    """Whether value depends on a graph input (or on a subgraph's own inputs), looking at most
    `limit` nodes upstream; past that it counts as run time. Values computed from constants alone are
    folded by `simplify` before any conversion, so they are not run-time parameters."""
    pending, seen = [value], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        producer = current.producer()
        if producer is None:
            if current.const_value is None:
                return True
            continue
        if len(seen) > limit:
            return True
        pending.extend(v for v in producer.inputs if v is not None)
    return False
