"""What the matcher reports: one Finding per problem, with where it is, why, and who can fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import onnx_ir as ir

KINDS = (
    "opset",
    "unsupported-op",
    "dynamic-shape",
    "unresolved-shape",
    "control-flow",
    "dtype",
    "quantization",
    "conversion-error",
    "divergence",
    "tflite-divergence",
    "simplify",
)


@dataclass(frozen=True)
class Finding:
    """A problem (blocking) or a fact worth knowing (not blocking) about one place in the model.

    `path` is the subgraph path ("" for the main graph, e.g. "If_3/then_branch" inside a branch);
    `op` is "domain::OpType" ("OpType" for the default domain); `subject` names what the finding is
    about when it is not a node (an input, a value).
    """

    kind: str
    reason: str
    node: str | None = None
    op: str | None = None
    path: str = ""
    subject: str | None = None
    blocking: bool = True
    rules: tuple[str, ...] = field(default=())

    @property
    def key(self) -> tuple[str, str, str | None, str | None]:
        """Identity of the place, so that a rule is never tried twice on the same thing."""
        return (self.kind, self.path, self.node, self.subject)

    def with_rules(self, rules: tuple[str, ...]) -> Finding:
        return replace(self, rules=rules)

    def to_json(self) -> dict:
        data = asdict(self)
        data["rules"] = list(self.rules)
        return data

    @property
    def where(self) -> str:
        place = self.node or self.subject or "model"
        return f"{self.path}/{place}" if self.path else place

    def describe(self) -> str:
        return f"{self.kind} at {self.where}: {self.reason}"


ATEN_DOMAIN = "org.pytorch.aten"


def op_id(domain: str, op_type: str) -> str:
    return op_type if domain in ("", "ai.onnx") else f"{domain}::{op_type}"


def node_op(node: object) -> str:
    """A node's op id; an ATen fallback node is named by the operator it stands for
    (`org.pytorch.aten::special_erfcx` whether the exporter wrote `ATen(operator=...)` or a node of that
    type), so that findings name it and rules claim it by operator."""
    domain, op_type = node.domain, node.op_type
    if domain == ATEN_DOMAIN and op_type == "ATen":
        attribute = node.attributes.get("operator")
        if attribute is not None and attribute.type == ir.AttributeType.STRING and attribute.value:
            op_type = attribute.value
    return op_id(domain, op_type)
