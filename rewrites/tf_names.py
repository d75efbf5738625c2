"""Node names TensorFlow refuses as scope names.

onnx2tf names some TF variables after the ONNX node (a grouped or depthwise Conv's kernel, in timm's
RegNetY and MobileNetV4 exported by TorchScript), and TF takes a name as a root scope only if it
matches `^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$`: TorchScript's `/s3/b9/conv2/conv/Conv` fails the
conversion ("is not a valid root scope name"). Every node name that does not match is renamed: its
leading characters outside the first class dropped and any other character outside the second
replaced by `_`, made unique. Names only; the graph computes the same.
"""

from __future__ import annotations

import re

import onnx_ir as ir

from convfix.findings import Finding
from convfix.rules import Rule, RuleContext

_SCOPE = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")
_REFUSED = "is not a valid root scope name"


def _scope_safe(name: str) -> str:
    body = re.sub(r"[^A-Za-z0-9_.\\/>-]", "_", name.lstrip("/_-\\>"))
    return body if body and _SCOPE.match(body) else f"n{body}"


def scope_safe_node_names(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    if _REFUSED not in finding.reason:
        return "the conversion did not fail on a scope name"
    nodes = [n for n in model.graph.all_nodes() if n.name and not _SCOPE.match(n.name)]
    if not nodes:
        return "every node name is a valid TF scope name"
    taken = {n.name for n in model.graph.all_nodes()}
    for node in nodes:
        name, count = _scope_safe(node.name), 1
        while name in taken:
            name, count = f"{_scope_safe(node.name)}_{count}", count + 1
        taken.add(name)
        node.name = name
    return None


RULES = [
    Rule(
        "scope-safe-node-names",
        ("conversion-error",),
        scope_safe_node_names,
        "node names TF refuses as scope names (TorchScript's leading '/') renamed to ones it takes",
    ),
]
