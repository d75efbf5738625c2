"""Helpers for writing rules: find the finding's node, make constants, put new values in a node's place."""

from __future__ import annotations

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


def replace_node(node: ir.Node, values: list[ir.Value]) -> None:
    """Make every use of node's outputs use `values` instead, then remove node.

    A graph output keeps its name: the new value takes it, or, when the new value cannot (a graph
    input, a weight, an outer-scope value, another output), an Identity named after it passes it on.
    New values without type information take the old ones'.
    """
    graph = node.graph
    for old, new in zip(node.outputs, values, strict=True):
        if new.dtype is None:
            new.dtype = old.dtype
        if new.shape is None:
            new.shape = old.shape
        if old.is_graph_output():
            producer = new.producer()
            if producer is None or producer.graph is not graph or new.is_graph_output():
                identity = ir.node("Identity", [new], name=f"{node.name}_out_{old.name}")
                graph.insert_before(node, identity)
                new = identity.outputs[0]
                new.dtype, new.shape = old.dtype, old.shape
            new.name, old.name = old.name, f"{old.name}__replaced"
            graph.outputs[graph.outputs.index(old)] = new
        old.replace_all_uses_with(new)
    graph.remove(node, safe=True)


def int64_constant(values: list[int] | int, name: str) -> ir.Node:
    """A Constant node holding int64 values (indices, axes, shapes)."""
    return ir.node("Constant", [], attributes={"value": ir.tensor(np.array(values, np.int64))}, name=name)
