"""A two-operand Einsum over dynamic dims as Transpose, MatMul and Transpose.

onnx2tf hands an Einsum to tf.einsum, whose output over dynamic dims it then judges transposed: what
reads it moves the wrong axes (an attention `bhid,bhjd->bhij` followed by Softmax fails at its Sub,
`[5,128,64,4] vs. [5,4,1,64]`), while the same product written with MatMul converts. Each letter is a
batch dim (both operands and the output), contracted (both operands only), free on one side (one
operand and the output), or summed on one side (one operand only: ReduceSum first). With at most one
contracted and one free letter per side, the product is a MatMul of the operands transposed to
[batch..., free, contracted] and [batch..., contracted, free] (a missing one becomes a dim of 1),
transposed to the output's order: no Reshape, so every dim stays what it is. Exact up to float
summation order. Refused: ellipses, a letter repeated within an operand, more letters per group.
"""

from __future__ import annotations

import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter
from convfix.rules import Rule, RuleContext


def _terms(node: ir.Node) -> tuple[str, str, str] | None:
    equation = node.attributes.get_string("equation", "").replace(" ", "")
    if "->" not in equation or "." in equation or len(node.inputs) != 2:
        return None
    operands, output = equation.split("->")
    terms = operands.split(",")
    if len(terms) != 2 or any(len(set(term)) != len(term) for term in (*terms, output)):
        return None
    return terms[0], terms[1], output


def _has_dynamic_operand(node: ir.Node) -> bool:
    """Whether an input of the Einsum has a dim that is not a number."""
    return any(v is not None and v.shape is not None and not v.shape.is_static() for v in node.inputs)


def _side(b: Emitter, x: ir.Value, term: str, batch: list[str], free: str, contracted: str, free_last: bool):
    """x summed over its own letters, transposed to [batch..., free, contracted] (or contracted, free),
    a missing free or contracted letter unsqueezed as a dim of 1."""
    summed = [i for i, letter in enumerate(term) if letter not in (*batch, free, contracted)]
    if summed:
        x = b.with_axes("ReduceSum", x, summed, keepdims=0)
        term = "".join(letter for letter in term if letter in (*batch, free, contracted))
    tail = [free, contracted] if not free_last else [contracted, free]
    present = [*batch, *(letter for letter in tail if letter)]
    perm = [term.index(letter) for letter in present]
    if perm != list(range(len(perm))):
        x = b.op("Transpose", [x], perm=perm)
    missing = [len(batch) + i for i, letter in enumerate(tail) if not letter]
    return b.with_axes("Unsqueeze", x, missing) if missing else x


def _as_matmul(model: ir.Model, node: ir.Node) -> bool:
    """Rewrite one Einsum in place; False if it is not of the form taken here."""
    terms = _terms(node)
    if terms is None or not _has_dynamic_operand(node):
        return False
    left, right, output = terms
    batch = [letter for letter in output if letter in left and letter in right]
    contracted = [letter for letter in left if letter in right and letter not in output]
    left_free = [letter for letter in left if letter in output and letter not in right]
    right_free = [letter for letter in right if letter in output and letter not in left]
    if len(contracted) > 1 or len(left_free) > 1 or len(right_free) > 1:
        return False
    k, m, n = (group[0] if group else "" for group in (contracted, left_free, right_free))
    b = Emitter(model, node)
    a = _side(b, node.inputs[0], left, batch, m, k, free_last=False)
    c = _side(b, node.inputs[1], right, batch, n, k, free_last=True)
    product = b.op("MatMul", [a, c])
    missing = [len(batch) + i for i, letter in enumerate((m, n)) if not letter]
    if missing:
        product = b.with_axes("Squeeze", product, missing)
    order = [*batch, *(letter for letter in (m, n) if letter)]
    perm = [order.index(letter) for letter in output]
    if perm != list(range(len(perm))):
        product = b.op("Transpose", [product], perm=perm)
    b.replace([product])
    return True


def einsum_as_matmul(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """Every two-operand Einsum over dynamic dims of the main graph, wherever the conversion failed:
    the failure shows downstream of it (at the Softmax that reads it)."""
    einsums = [n for n in model.graph if n.op_type == "Einsum" and n.domain in ("", "ai.onnx")]
    rewritten = sum(_as_matmul(model, node) for node in einsums)
    if not rewritten:
        return "no two-operand Einsum over dynamic dims of the form taken here"
    context.details.append(f"{rewritten} Einsum(s) as MatMul")
    return None


RULES = [
    Rule(
        "einsum-as-matmul",
        ("conversion-error", "divergence"),
        einsum_as_matmul,
        "a two-operand Einsum over dynamic dims as Transpose, MatMul, Transpose (onnx2tf moves its axes)",
    ),
]
