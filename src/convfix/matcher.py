"""Runs the detectors of `patterns/` over a model in one pass, subgraphs of If/Loop/Scan included.

A detector is a function registered with `node_detector(...)` (called per node, indexed by op so a scan
stays linear) or `model_detector` (called once). Detectors only read.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import onnx_ir as ir

from convfix.findings import Finding, op_id


@dataclass
class ScanContext:
    """What detectors may consult besides the model."""

    supported_ops: frozenset[str]
    pinned_shapes: Mapping[str, tuple[int | None, ...]] = field(default_factory=dict)


NodeDetector = Callable[[ir.Node, str, ScanContext], Iterable[Finding]]
ModelDetector = Callable[[ir.Model, ScanContext], Iterable[Finding]]

_ANY = "*"
_node_detectors: dict[str, list[NodeDetector]] = {}
_model_detectors: list[ModelDetector] = []


def node_detector(*op_types: str) -> Callable[[NodeDetector], NodeDetector]:
    """Register a per-node detector for the given op ids ("If", "com.microsoft::FastGelu"), or all."""

    def register(func: NodeDetector) -> NodeDetector:
        for key in op_types or (_ANY,):
            _node_detectors.setdefault(key, []).append(func)
        return func

    return register


def model_detector(func: ModelDetector) -> ModelDetector:
    _model_detectors.append(func)
    return func


def _load_builtin_patterns() -> None:
    import convfix.patterns as package

    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


def walk(graph: ir.Graph, path: str = "") -> Iterator[tuple[ir.Node, str]]:
    """Every node with its subgraph path, parents before the nodes of their subgraphs."""
    for node in graph:
        yield node, path
        if not node.attributes:  # most nodes: no subgraph to look for, and listing them costs
            continue
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                yield from walk(attr.value, f"{path}/{node.name}/{attr.name}".lstrip("/"))
            elif attr.type == ir.AttributeType.GRAPHS:
                for index, sub in enumerate(attr.value):
                    yield from walk(sub, f"{path}/{node.name}/{attr.name}[{index}]".lstrip("/"))


def _detectors_for(domain: str, op_type: str) -> tuple[NodeDetector, ...]:
    """The op's own detectors, then those for every op: the order the findings come in."""
    return (*_node_detectors.get(op_id(domain, op_type), ()), *_node_detectors.get(_ANY, ()))


def scan_model(model: ir.Model, context: ScanContext) -> list[Finding]:
    """All findings, in graph order, without rule claims (the engine adds those)."""
    _load_builtin_patterns()
    findings: list[Finding] = []
    for detector in _model_detectors:
        findings.extend(detector(model, context))
    # Resolved once per (domain, op_type) of this scan, since detectors may register between scans.
    by_op: dict[tuple[str, str], tuple[NodeDetector, ...]] = {}
    for node, path in walk(model.graph):
        op = (node.domain, node.op_type)
        detectors = by_op.get(op)
        if detectors is None:
            detectors = by_op[op] = _detectors_for(*op)
        for detector in detectors:
            findings.extend(detector(node, path, context))
    return findings
