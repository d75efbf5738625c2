"""What a repair changed in the graph, node by node: the nodes of the original that are gone and the
nodes of the repaired model that are new (by name, main graph), with their op counts, and which rule
claimed each node it rewrote. The HTML report and the Model Explorer node data are drawn from it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import onnx_ir as ir

from convfix.findings import node_op

MAX_LISTED = 500  # nodes listed by name on each side; the counts cover them all


@dataclass
class GraphDiff:
    nodes_before: int = 0
    nodes_after: int = 0
    removed_ops: dict[str, int] = field(default_factory=dict)
    added_ops: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    rewritten_by: dict[str, str] = field(default_factory=dict)  # original node -> the rule that took it

    def to_json(self) -> dict:
        return asdict(self)


def snapshot(model: ir.Model) -> dict[str, str]:
    """Each main-graph node's name and op, in graph order (unnamed ones by position)."""
    return {node.name or f"#{i}": node_op(node) for i, node in enumerate(model.graph)}


def diff(before: dict[str, str], repaired: ir.Model, accepted: Sequence[tuple[str, str | None]]) -> GraphDiff:
    """`before`: the snapshot of the model as normalized, before any rewrite; `accepted`: (rule, node
    it was applied to) of every accepted step, in order."""
    after = snapshot(repaired)
    removed = [name for name in before if name not in after]
    added = [name for name in after if name not in before]
    rewritten = {node: rule for rule, node in accepted if node is not None and node in before}
    return GraphDiff(
        nodes_before=len(before),
        nodes_after=len(after),
        removed_ops=dict(Counter(before[n] for n in removed).most_common()),
        added_ops=dict(Counter(after[n] for n in added).most_common()),
        removed=removed[:MAX_LISTED],
        added=added[:MAX_LISTED],
        rewritten_by=rewritten,
    )
