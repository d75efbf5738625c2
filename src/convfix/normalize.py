"""Normalization before anything looks at the model: no semantic change, only a canonical form.

Local functions are inlined (onnx2tf cannot take them), names made unique, nodes sorted, shapes
inferred so that detectors and the converter see every shape ONNX can derive, and Shape's start and
end written out in the one form every runtime reads alike.
"""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common


def infer_shapes(model: ir.Model) -> None:
    """onnx shape inference with data propagation, in place; a failure leaves the model as it was."""
    try:
        common.ShapeInferencePass(check_type=False, strict_mode=False, data_prop=True)(model)
    except Exception:  # noqa: BLE001 - inference is best effort; the model stays valid without it
        return


def tidy(model: ir.Model) -> None:
    """What every rewrite leaves to be redone: dead nodes out, order restored, shapes re-inferred."""
    common.RemoveUnusedNodesPass()(model)
    common.RemoveUnusedOpsetsPass()(model)
    common.TopologicalSortPass()(model)
    infer_shapes(model)


def register_orphan_constants(model: ir.Model) -> int:
    """Make every constant that a node reads but no graph holds an initializer of its graph; how many.

    onnxscript 0.7.2's rewriter drops one of two new initializers of the same name (its Flatten2Reshape
    names each `<input>/shape`, so two Flattens of one tensor collide: LLaMA's TorchScript export),
    leaving a Reshape that reads a value nothing produces; the optimizer's result then cannot run.
    The value still holds the constant the rule made."""
    registered = 0
    for node in model.graph.all_nodes():
        graph = node.graph
        for value in node.inputs:
            if (
                value is None
                or value.producer() is not None
                or value.const_value is None
                or value.graph is not None
                or value.is_graph_input()
            ):
                continue
            base, index = value.name or "constant", 0
            while value.name is None or value.name in graph.initializers:
                index += 1
                value.name = f"{base}_{index}"
            graph.register_initializer(value)
            registered += 1
    return registered


def _names_unique(model: ir.Model) -> bool:
    """Whether every node and every value already has a name of its own, across subgraphs too: then
    NameFixPass has nothing to do (a third of a 100k-node scan's normalization, measured). One walk,
    which stops at the first unnamed or repeated name."""
    nodes: set[str] = set()
    values: set[str] = set()

    def fresh(name: str | None, seen: set[str]) -> bool:
        if not name or name in seen:
            return False
        seen.add(name)
        return True

    def unique_in(graph: ir.Graph) -> bool:
        if not all(fresh(v.name, values) for v in (*graph.inputs, *graph.initializers.values())):
            return False
        for node in graph:
            if not fresh(node.name, nodes) or not all(fresh(v.name, values) for v in node.outputs):
                return False
            for attribute in node.attributes.values():
                if attribute.type == ir.AttributeType.GRAPH and not unique_in(attribute.value):
                    return False
                if attribute.type == ir.AttributeType.GRAPHS and not all(map(unique_in, attribute.value)):
                    return False
        return True

    return unique_in(model.graph)


def _shape_bounds_explicit(model: ir.Model) -> None:
    """Shape's start and end both given, counted from the start and clipped to [0, rank], as ONNX
    defines them. onnx2tf reads them only when both are given, and as given: with start alone it returns
    the whole shape, and an end past the rank or before the start fails in tf.slice (node suite)."""
    for node in model.graph.all_nodes():
        start, end = node.attributes.get("start"), node.attributes.get("end")
        data = node.inputs[0] if node.inputs else None
        if node.op_type != "Shape" or (start is None and end is None) or data is None or data.shape is None:
            continue
        rank = len(data.shape)

        def clipped(value: int, rank: int = rank) -> int:
            return min(max(value + rank if value < 0 else value, 0), rank)

        first = clipped(start.as_int() if start is not None else 0)
        last = max(clipped(end.as_int() if end is not None else rank), first)
        node.attributes["start"] = ir.Attr("start", ir.AttributeType.INT, first)
        node.attributes["end"] = ir.Attr("end", ir.AttributeType.INT, last)


def normalize(model: ir.Model) -> ir.Model:
    """Inline local functions and fix names, in place. A freshly loaded model is already checked to be
    sorted and has its shapes inferred (model_io.load), so sorting and inference are only redone when
    inlining changed the graph."""
    inline = bool(model.functions)
    if inline:
        common.InlinePass()(model)
        common.RemoveUnusedFunctionsPass()(model)
    if inline or not _names_unique(model):
        common.NameFixPass()(model)
    if inline:
        tidy(model)
    _shape_bounds_explicit(model)
    return model
