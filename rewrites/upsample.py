"""Upsample (deprecated since opset 10) as the Resize that computes the same thing.

onnx2tf takes Upsample's channels-first scales for channels-last ones (seen on the node suite: shape
(1, 4, 6, 2) for (1, 1, 4, 6)) and converts Resize right. Upsample is valid ONNX only below opset 10,
where Resize does not exist yet. So the whole model is moved to opset 11 by onnx's version converter,
whose adapters turn each Upsample into a Resize; the converter leaves Resize-11's defaults
(half_pixel, round_prefer_floor), which are not Upsample's, so its asymmetric coordinates (and floor,
for nearest) are written on each Resize. Opset 11, not 10: convfix's Resize rules take Resize-11+
(onnx2tf applies run-time scales to the wrong dims; resize-runtime-parameters repairs that). Exact
(the engine's parity check covers what the version converter does to the other nodes).
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import default_opset, standard_node, upgrade_opset
from convfix.rules import Rule, RuleContext

_RESIZE_SINCE = 10
_TARGET_OPSET = 11


def upsample_as_resize(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    if standard_node(model, finding, "Upsample") is None:
        return "not an Upsample node"
    if default_opset(model) >= _RESIZE_SINCE:
        return f"Upsample is deprecated from opset {_RESIZE_SINCE}: the model is not valid ONNX"
    reason = upgrade_opset(model, _TARGET_OPSET)
    if reason:
        return reason
    for node in model.graph.all_nodes():
        if node.op_type == "Resize":  # none existed below opset 10: each one is an Upsample
            node.attributes["coordinate_transformation_mode"] = ir.AttrString(
                "coordinate_transformation_mode", "asymmetric"
            )
            if node.attributes.get_string("mode", "nearest") == "nearest":
                node.attributes["nearest_mode"] = ir.AttrString("nearest_mode", "floor")
    return None


RULES = [
    Rule(
        "upsample-as-resize",
        ("conversion-error", "divergence"),
        upsample_as_resize,
        "Upsample (opset < 10) as Resize with Upsample's coordinates, the model moved to opset 11 by "
        "onnx's version converter",
        ops=("Upsample",),
    ),
]
