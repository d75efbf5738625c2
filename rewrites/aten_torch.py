"""Any allowlisted ATen fallback, written as standard ONNX by torch's own exporter.

The TorchScript exporter leaves an op it cannot express as an `org.pytorch.aten` node; torch itself
knows how to compute it, and its torch.export-based exporter can write most of them as ONNX through
torch's decomposition table and onnxscript's torchlib, the rest through convfix's translations
(convfix/translations/). This rule asks the oracle worker to export the node's operator alone, with
the node's input types and shapes (dynamic dims stay dynamic) and its constant arguments baked in, and
splices the result in place of the node. One rule for the class: no operator is special-cased here.
Parity against torch (the oracle for ATen nodes) decides, as for any rule.
"""

from __future__ import annotations

from typing import Any

import onnx
import onnx_ir as ir

from convfix import oracle
from convfix.findings import Finding
from convfix.rewriting import default_opset, find_node, splice
from convfix.rules import Rule, RuleContext
from convfix.runtimes import aten
from convfix.runtimes.messages import DecomposeAten, TensorArg


def _argument(value: ir.Value | None) -> TensorArg | Any:
    """What the exporter is told of one input: its value if constant, else its type and shape."""
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        return tensor.numpy()
    if value.dtype is None or value.shape is None:
        return value  # not describable: the caller refuses
    dims = tuple(d if isinstance(d, int) else (d.value or None) for d in value.shape)
    return TensorArg(value.dtype.numpy().name, dims)


def _decompose(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.domain != aten.ATEN_DOMAIN:
        return "no ATen node there"
    attributes = {name: attr.value for name, attr in node.attributes.items()}
    operator = aten.operator_of(node.op_type, attributes)
    arguments = [_argument(value) for value in node.inputs]
    unknown = [a.name for a in arguments if isinstance(a, ir.Value)]
    if unknown:
        return f"the type or shape of input {unknown[0]!r} is unknown"
    request = DecomposeAten(
        operator=operator,
        overload=str(attributes.get("overload_name") or ""),
        inputs=tuple(arguments),
        attributes={k: v for k, v in attributes.items() if k not in aten.NODE_ATTRIBUTES},
        opset=default_opset(model),
    )
    reply = oracle.decompose(request)
    if reply.model is None:
        return reply.error
    piece = ir.serde.deserialize_model(onnx.load_from_string(reply.model))
    splice(model, node, piece, [node.inputs[i] for i in reply.tensors])
    context.details.append(f"aten::{operator} by {reply.method}")
    return None


RULES = [
    Rule(
        "decompose-aten-with-torch",
        ("unsupported-op", "conversion-error", "divergence"),
        _decompose,
        "an allowlisted ATen fallback exported alone by torch's torch.export-based exporter (torch's "
        "decompositions, torchlib, convfix's translations) and spliced in place of the node",
        ops=tuple(f"{aten.ATEN_DOMAIN}::{name}" for name in sorted(aten.PURE_FUNCTIONS)),
    )
]
