"""Sums over bools, which the TorchScript exporter writes and ONNX does not define.

PyTorch accumulates bools in int64 (`mask.cumsum(-1)`, `mask.sum()`, transformers' packed-sequence
check in every decoder), and the exporter writes the CumSum or ReduceSum on the bool tensor itself:
the checker rejects the model and onnxruntime has no kernel for it, so the export is unusable. The
exporter typed everything after it as PyTorch's int64. convfix reads such a node as PyTorch computes
it, with a Cast to int64 before it (in memory: the file is not touched), and says so in the report.
"""

from __future__ import annotations

import onnx

from convfix.proto_walk import all_graphs

ACCUMULATIONS = frozenset({"CumSum", "ReduceSum", "ReduceProd"})
META_KEY = "convfix.torch_promotions"


def _bool_values(proto: onnx.ModelProto) -> set[str]:
    """Names of the values typed bool by lenient inference (what the strict checker would refuse)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False)
    except (onnx.shape_inference.InferenceError, ValueError):
        return set()
    return {
        value.name
        for graph in all_graphs(inferred.graph)
        for value in (*graph.input, *graph.value_info, *graph.output)
        if value.type.tensor_type.elem_type == onnx.TensorProto.BOOL
    } | {
        tensor.name
        for graph in all_graphs(inferred.graph)
        for tensor in graph.initializer
        if tensor.data_type == onnx.TensorProto.BOOL
    }


def _fresh(name: str, taken: set[str]) -> str:
    candidate, index = f"{name}_as_int64", 0
    while candidate in taken:
        index += 1
        candidate = f"{name}_as_int64_{index}"
    taken.add(candidate)
    return candidate


def _sums_bools(node: onnx.NodeProto, bools: set[str]) -> bool:
    return bool(node.input) and node.input[0] in bools and _is_sum(node)


def _is_sum(node: onnx.NodeProto) -> bool:
    return node.op_type in ACCUMULATIONS and node.domain in ("", "ai.onnx")


def _sums(graph: onnx.GraphProto) -> bool:
    return any(map(_is_sum, graph.node))


def promote(proto: onnx.ModelProto) -> list[str]:
    """Put a Cast to int64 before every bool input of a sum, in place; one line per node so read."""
    graphs = [g for g in all_graphs(proto.graph) if _sums(g)]
    if not graphs:
        return []
    bools = _bool_values(proto)
    taken = {name for g in all_graphs(proto.graph) for node in g.node for name in (*node.input, *node.output)}
    read: list[str] = []
    for graph in graphs:
        nodes = []
        for node in graph.node:
            if _sums_bools(node, bools):
                cast = onnx.helper.make_node(
                    "Cast",
                    [node.input[0]],
                    [_fresh(node.input[0], taken)],
                    name=_fresh(f"{node.name or node.op_type}_cast", taken),
                    to=onnx.TensorProto.INT64,
                )
                node.input[0] = cast.output[0]
                nodes.append(cast)
                read.append(f"{node.op_type} {node.name!r} sums bools: read as PyTorch computes it, in int64")
            nodes.append(node)
        if len(nodes) > len(graph.node):
            del graph.node[:]
            graph.node.extend(nodes)
    return read
