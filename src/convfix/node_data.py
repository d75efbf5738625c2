"""Model Explorer node data for the original and the repaired graph (`--model-explorer DIR`): per
node, what convfix found there (a finding's kind, a divergence, a conversion error) and which rule
rewrote it, or that the repair added it. Model Explorer's ONNX adapter names a graph node by the ONNX
node's name and the main graph by the graph's name: the data is keyed so; nodes without a name in
the file carry none."""

from __future__ import annotations

import json
from pathlib import Path

import onnx

from convfix.journal import Report
from convfix.model_io import atomic_path

MAIN_GRAPH = "<main>"  # the adapter's name for a main graph without one


def _graph(path: Path) -> tuple[str, set[str]]:
    model = onnx.load(str(path), load_external_data=False)
    return model.graph.name or MAIN_GRAPH, {node.name for node in model.graph.node if node.name}


def _labels(report: Report) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """What to show on each node of the original graph, and of the repaired one."""
    original: dict[str, list[str]] = {}
    repaired: dict[str, list[str]] = {}
    for finding in report.findings:
        if finding.node and not finding.path:
            original.setdefault(finding.node, []).append(f"{finding.kind}: {finding.reason}")
    diff = report.graph_diff
    if diff is not None:
        for node, rule in diff.rewritten_by.items():
            original.setdefault(node, []).append(f"rewritten by {rule}")
        for node in diff.added:
            repaired.setdefault(node, []).append("added by the repair")
    for finding in report.remaining:
        if finding.node and not finding.path:
            repaired.setdefault(finding.node, []).append(f"remaining {finding.kind}: {finding.reason}")
    return original, repaired


def _node_data(graph: str, names: set[str], labels: dict[str, list[str]]) -> dict:
    results = {node: {"value": "; ".join(texts)} for node, texts in labels.items() if node in names}
    return {graph: {"name": "convfix", "results": results}}


def write(report: Report, original: Path, repaired: Path | None, folder: Path) -> list[Path]:
    """DIR/original.json always; DIR/repaired.json when the repaired model was written."""
    on_original, on_repaired = _labels(report)
    written = []
    sides = [("original", original, on_original)]
    if repaired is not None:
        sides.append(("repaired", repaired, on_repaired))
    folder.mkdir(parents=True, exist_ok=True)
    for side, model_path, labels in sides:
        graph, names = _graph(model_path)
        target = folder / f"{side}.json"
        with atomic_path(target) as tmp:
            tmp.write_text(json.dumps(_node_data(graph, names, labels), indent=1) + "\n")
        written.append(target)
    return written
