"""A model newer than the runtimes, converted down by onnx's version converter.

onnx's own adapters rewrite each node whose op changed between the model's opset and RUNTIME_OPSET
(most opset-24 changes only widen type lists); the IR version is lowered where nothing in the model
needs the newer one (onnx.checker says). The reference for the original comes from onnx.reference,
which knows the newest opsets, so the conversion is checked like any rewrite. Refused where onnx has
no adapter down for an op the model holds.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx import version_converter

from convfix.findings import Finding
from convfix.oracle import RUNTIME_IR_VERSION, RUNTIME_OPSET
from convfix.rules import Rule, RuleContext


def _base_dir(model: ir.Model) -> str | None:
    return next(
        (
            v.const_value.base_dir
            for v in model.graph.initializers.values()
            if isinstance(v.const_value, ir.ExternalTensor)
        ),
        None,
    )


def converted_down(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx", 0))
    proto = ir.to_proto(model)
    if opset > RUNTIME_OPSET:
        try:
            proto = version_converter.convert_version(proto, RUNTIME_OPSET)
        except Exception as exc:  # noqa: BLE001 - onnx raises several kinds; each means no adapter
            return f"onnx's version converter cannot take opset {opset} to {RUNTIME_OPSET}: {exc}"
    if proto.ir_version > RUNTIME_IR_VERSION:
        proto.ir_version = RUNTIME_IR_VERSION
        try:
            onnx.checker.check_model(proto)
        except onnx.checker.ValidationError as exc:
            return f"the model needs IR version {model.ir_version}: {str(exc).splitlines()[0]}"
    base_dir = _base_dir(model)
    converted = ir.from_proto(proto)
    if base_dir is not None:
        ir.external_data.set_base_dir(converted.graph, base_dir)
    model.graph = converted.graph  # which carries the opset imports
    model.ir_version = converted.ir_version
    return None


RULES = [
    Rule(
        "converted-down-to-runtime-opset",
        ("opset",),
        converted_down,
        f"onnx's version converter to opset {RUNTIME_OPSET}, IR version {RUNTIME_IR_VERSION} (what "
        "onnxruntime and onnx2tf load)",
    )
]
