"""Walks over an ONNX protobuf graph and its subgraphs, for code that reads a model before (or
instead of) building the IR: the loader's checks, the oracle, the converter's error mapping."""

from __future__ import annotations

from collections.abc import Iterator

import onnx


def _subgraphs(node: onnx.NodeProto) -> Iterator[onnx.GraphProto]:
    for attr in node.attribute:
        if attr.HasField("g"):
            yield attr.g
        yield from attr.graphs


def all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, each before the nodes of its subgraphs."""
    for node in graph.node:
        yield node
        if node.attribute:  # most nodes have none: no subgraph walk to start
            for sub in _subgraphs(node):
                yield from all_nodes(sub)


def all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor: initializers and tensor attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        if not node.attribute:  # most nodes: nothing to look into
            continue
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
        for sub in _subgraphs(node):
            yield from all_tensors(sub)


def all_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """The graph and every subgraph, each before its subgraphs."""
    yield graph
    for node in graph.node:
        if node.attribute:
            for sub in _subgraphs(node):
                yield from all_graphs(sub)
