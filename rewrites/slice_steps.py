"""A Slice with a negative step as a Gather of the indices it selects, spelled out.

onnx2tf converts Slice with step -1 (how torch.flip and x[::-1]-style code export) into a slice
that does not reverse: the output is silently wrong. Gather with the explicit indices is exact; it
needs constant starts/ends/axes/steps and a static length on each reversed axis.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import constant_input_ints, int64_constant, optional_input, replace_node
from convfix.rules import Rule, RuleContext


def _negative_steps(node: ir.Node) -> bool:
    steps = constant_input_ints(node, 4)
    return steps is not None and any(s < 0 for s in steps)


def onnx_slice_indices(start: int, end: int, step: int, dim: int) -> list[int]:
    """The indices ONNX Slice selects on one axis (negative bounds count from the end, then clamp)."""
    start = start + dim if start < 0 else start
    end = end + dim if end < 0 else end
    if step > 0:
        start, end = min(max(start, 0), dim), min(max(end, 0), dim)
    else:
        start, end = min(max(start, 0), dim - 1), min(max(end, -1), dim - 1)
    return list(range(start, end, step))


def _plan(node: ir.Node) -> tuple[list[tuple[int, list[int]]], list[tuple[int, int, int, int]]] | str:
    """(axis, indices) per negative step and (start, end, axis, step) per positive one, or why not."""
    x = node.inputs[0]
    starts, ends, steps = (constant_input_ints(node, i) for i in (1, 2, 4))
    axes = (
        constant_input_ints(node, 3)
        if optional_input(node, 3) is not None
        else list(range(len(starts or ())))
    )
    if starts is None or ends is None or axes is None or x.shape is None:
        return "starts/ends/axes are not constant or the input's rank is unknown"
    axes = [a + len(x.shape) if a < 0 else a for a in axes]
    gathers, slices = [], []
    for start, end, axis, step in zip(starts, ends, axes, steps, strict=True):
        if step > 0:
            slices.append((start, end, axis, step))
        elif not isinstance(x.shape[axis], int):
            return f"axis {axis} has no static length: its indices cannot be spelled out"
        else:
            gathers.append((axis, onnx_slice_indices(start, end, step, x.shape[axis])))
    return gathers, slices


def _rewrite(node: ir.Node, gathers: list, slices: list) -> None:
    graph, value, added = node.graph, node.inputs[0], []
    if slices:
        columns = [
            int64_constant(list(c), f"{node.name}_{what}")
            for what, c in zip(("starts", "ends", "axes", "steps"), zip(*slices, strict=True), strict=True)
        ]
        added += columns
        added.append(ir.node("Slice", [value, *(c.outputs[0] for c in columns)], name=f"{node.name}_forward"))
        value = added[-1].outputs[0]
    for axis, indices in gathers:
        index = int64_constant(indices, f"{node.name}_indices_{axis}")
        added += [
            index,
            ir.node(
                "Gather",
                [value, index.outputs[0]],
                attributes={"axis": axis},
                name=f"{node.name}_gather_{axis}",
            ),
        ]
        value = added[-1].outputs[0]
    graph.insert_before(node, added)
    replace_node(node, [value])


def gather_negative_steps(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every Slice with a constant negative step (they are all converted alike)."""
    nodes = [n for n, _ in walk(model.graph) if n.op_type == "Slice" and n.domain in ("", "ai.onnx")]
    nodes = [n for n in nodes if _negative_steps(n)]
    if not nodes:
        return "no Slice with a constant negative step"
    plans = [_plan(n) for n in nodes]
    problem = next((p for p in plans if isinstance(p, str)), None)
    if problem:
        return problem
    for node, (gathers, slices) in zip(nodes, plans, strict=True):
        _rewrite(node, gathers, slices)
    return None


RULES = [
    Rule(
        "slice-negative-step",
        ("divergence", "conversion-error"),
        gather_negative_steps,
        "a Slice with a constant negative step as a Gather of the indices it selects (onnx2tf drops the "
        "reversal)",
        ops=("Slice",),
    )
]
