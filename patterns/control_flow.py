"""If/Loop/Scan nodes: the converter builds them unreliably (outer-scope values, ragged sequences)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import ScanContext, node_detector


def _outer_scope_refs(node: ir.Node) -> int:
    """How many values the node's subgraphs read from enclosing scopes (the converter's weak spot)."""
    count = 0
    for attr in node.attributes.values():
        if attr.type != ir.AttributeType.GRAPH:
            continue
        graph = attr.value
        for inner in graph:
            count += sum(
                1 for v in inner.inputs if v is not None and v.graph is not graph and v.graph is not None
            )
    return count


@node_detector("If", "Loop", "Scan")
def control_flow(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    refs = _outer_scope_refs(node)
    reason = f"{node.op_type} with subgraphs: onnx2tf converts control flow unreliably"
    if refs:
        reason += f" ({refs} outer-scope references)"
    yield Finding("control-flow", reason, node=node.name, op=node.op_type, path=path)
