"""Replace a standard op by its ONNX function body (what the `*_expanded` conformance cases contain).

Many ops onnx2tf lacks or converts wrongly (Gelu, Mish, CenterCropPad, GroupNormalization, ...) are
defined by the ONNX standard as a function of simpler ops; inlining that body is exact by definition.
It only claims findings at such an op, never runs blanket: expanding an op onnx2tf already converts
well can break it (the body may use a form onnx2tf handles worse), so the conversion result decides.
"""

from __future__ import annotations

import functools

import onnx
import onnx_ir as ir
import onnxscript.optimizer
from onnx_ir.passes.common import InlinePass

from convfix.findings import Finding
from convfix.rewriting import find_node
from convfix.rules import Rule, RuleContext

EXPANDED_DOMAIN = "convfix.expanded"
# Random ops: a body draws other numbers than the op would, so expanding them proves nothing.
_NEVER = {"Bernoulli"}


@functools.cache
def function_ops() -> tuple[str, ...]:
    """Default-domain op types with a function body in some opset version."""
    return tuple(
        sorted(
            {
                s.name
                for s in onnx.defs.get_all_schemas_with_history()
                if s.domain == "" and (s.has_function or s.has_context_dependent_function)
            }
            - _NEVER
        )
    )


def _latest(versions: list[int], opset: int) -> int | None:
    usable = [v for v in versions if v <= opset]
    return max(usable) if usable else None


def function_body(node: ir.Node, opset: int) -> onnx.FunctionProto | str:
    """The node's function body for the model's opset, or why there is none."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return f"no schema for {node.op_type} at opset {opset}"
    body = onnx.FunctionProto()
    plain = _latest(list(schema.function_opset_versions), opset) if schema.has_function else None
    if plain is not None:
        body.ParseFromString(schema.get_function_with_opset_version(plain))
        return body
    version = _latest(list(schema.context_dependent_function_opset_versions), opset)
    if not schema.has_context_dependent_function or version is None:
        return f"{node.op_type} has no function body at opset {opset}"
    if any(v is not None and v.type is None for v in node.inputs):
        return "an input's type is unknown: the body depends on it"
    node_proto = ir.serde.serialize_node(node)
    types = [ir.serde.serialize_type(v.type) if v is not None else onnx.TypeProto() for v in node.inputs]
    serialized = schema.get_context_dependent_function_with_opset_version(
        version, node_proto.SerializeToString(), [t.SerializeToString() for t in types]
    )
    body.ParseFromString(serialized)
    return body


def _add_default_attributes(node: ir.Node, schema: onnx.defs.OpSchema) -> None:
    """The body refers to attributes by name; defaults the node leaves out must be explicit."""
    for name, attr in schema.attributes.items():
        if name not in node.attributes and attr.default_value.ByteSize():
            node.attributes[name] = ir.serde.deserialize_attribute(attr.default_value)


def expand_function(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = find_node(model, finding)
    if node is None or node.domain not in ("", "ai.onnx") or node.op_type not in function_ops():
        return "not a standard op with a function body"
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if opset is None:
        return "the model imports no default-domain opset"
    _add_default_attributes(node, onnx.defs.get_schema(node.op_type, opset, ""))
    body = function_body(node, opset)
    if isinstance(body, str):
        return body
    if not body.node:
        return f"the schema built no body for this {node.op_type} node"
    # A body may declare optional outputs the node does not have (and then does not compute them).
    del body.output[len(node.outputs) :]
    produced = {name for each in body.node for name in each.output}
    for name, value in zip(body.output, node.outputs, strict=True):
        if name in produced:
            continue
        if value.uses() or value.is_graph_output():
            return f"the body does not compute {name!r}, which this node's users need"
        # An output the node leaves unused: a placeholder keeps the positions; it is dead code after.
        body.node.append(onnx.helper.make_node("Constant", [], [name], value_float=0.0))
    body.domain, body.name = EXPANDED_DOMAIN, f"{node.op_type}_{len(model.functions)}"
    # The body is the op's definition at this opset even when written against an older one.
    for entry in body.opset_import:
        if entry.domain in ("", "ai.onnx"):
            entry.version = opset
    function = ir.serde.deserialize_function(body)
    model.functions[function.identifier()] = function
    model.opset_imports[EXPANDED_DOMAIN] = 1
    node.domain, node.op_type, node.version = EXPANDED_DOMAIN, body.name, None
    InlinePass(criteria=lambda f: f.domain == EXPANDED_DOMAIN)(model)
    model.opset_imports.pop(EXPANDED_DOMAIN, None)
    # A body computes shapes and constants at run time (Shape, ConstantOfShape, CastLike ...); folded
    # here, because the engine does not simplify again after a rule that a conversion error triggered,
    # and onnx2tf takes minutes on an unfolded Attention body.
    onnxscript.optimizer.optimize(model)
    return None


RULES = [
    Rule(
        "expand-function",
        ("unsupported-op", "conversion-error", "divergence"),
        expand_function,
        "a standard op with an ONNX function body (Gelu, Mish, GroupNormalization, ...) becomes that body",
        ops=function_ops(),
        last_resort=True,
    )
]
