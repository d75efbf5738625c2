"""Shape of an intermediate tensor, read from the graph inputs' dims instead.

onnx2tf holds many rank-3+ intermediates channels-last and returns their Shape in its own dim order
(seen: a dynamic DistilBERT's attention reshapes built from the Shape of a [batch, 2, seq, 8] tensor
diverge by 1e-2). Where every dim of the tensor is either static or a symbol that names a dim of a
graph input (`batch`, `seq`: torch.export and shape inference carry the names through), the Shape is
a Concat of constants and Shapes of those inputs, which onnx2tf keeps as they are. A dim that is an
expression of the inputs' dims (onnxruntime's symbolic shape inference writes a CNN's downsampled height
as `floor(floor(height/2 - 1/2)/2) + 1`: symbolic_shapes.py) is computed from them in int64, exactly:
each part carried as an integer numerator over a constant denominator, floor as a division that
rounds down (Mod with fmod=0), ceiling as -floor(-x). The text is parsed by Python's `ast` and only
numbers, the inputs' dim names, + - * /, floor, ceiling, Max and Min are taken: a model's dim names
are never evaluated. Exact while the symbols are right; the probes give dims of different names
different sizes, so a wrong one shows.
A detector flags such Shapes before conversion: the damage surfaces far downstream (a Reshape or an
Add with incompatible shapes), never at the Shape.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from convfix.findings import Finding
from convfix.rewriting import Emitter, standard_node
from convfix.rules import Rule, RuleContext


def _input_dims(graph: ir.Graph) -> dict[str, tuple[ir.Value, int]]:
    """Each symbolic dim name of the graph inputs, with the first input and axis that carry it."""
    found: dict[str, tuple[ir.Value, int]] = {}
    for value in graph.inputs:
        for axis, dim in enumerate(value.shape or ()):
            if isinstance(dim, ir.SymbolicDim) and dim.value and dim.value not in found:
                found[dim.value] = (value, axis)
    return found


def _dim(b: Emitter, value: ir.Value, axis: int) -> ir.Value:
    if b.opset >= 15:
        return b.op("Shape", [value], start=axis, end=axis + 1)
    return b.op("Gather", [b.op("Shape", [value]), b.const(np.array([axis], np.int64))])


@dataclass(frozen=True)
class _Ratio:
    """A value as an int64 numerator (a tensor, or a Python int for a constant) over a denominator."""

    numerator: ir.Value | int
    denominator: int = 1


class _DimArithmetic:
    """Emits a dim expression's int64 arithmetic; raises ValueError on anything else."""

    def __init__(self, b: Emitter, named: dict[str, tuple[ir.Value, int]]) -> None:
        self.b, self.named = b, named

    def tensor(self, value: ir.Value | int) -> ir.Value:
        return value if isinstance(value, ir.Value) else self.b.const(np.array([value], np.int64))

    def scaled(self, ratio: _Ratio, factor: int) -> ir.Value | int:
        if factor == 1:
            return ratio.numerator
        if isinstance(ratio.numerator, int):
            return ratio.numerator * factor
        return self.b.op("Mul", [ratio.numerator, self.tensor(factor)])

    def combined(self, op: str, left: _Ratio, right: _Ratio) -> _Ratio:
        """Add, Sub, Max or Min over a common denominator."""
        common = math.lcm(left.denominator, right.denominator)
        a, c = self.scaled(left, common // left.denominator), self.scaled(right, common // right.denominator)
        if isinstance(a, int) and isinstance(c, int):
            folded = {"Add": a + c, "Sub": a - c, "Max": max(a, c), "Min": min(a, c)}[op]
            return _Ratio(folded, common)
        return _Ratio(self.b.op(op, [self.tensor(a), self.tensor(c)]), common)

    def floor(self, ratio: _Ratio) -> _Ratio:
        n, d = ratio.numerator, ratio.denominator
        if d == 1:
            return ratio
        if isinstance(n, int):
            return _Ratio(n // d)
        rest = self.b.op("Mod", [n, self.tensor(d)], fmod=0)  # the divisor's sign: a floor
        return _Ratio(self.b.op("Div", [self.b.op("Sub", [n, rest]), self.tensor(d)]))

    def negated(self, ratio: _Ratio) -> _Ratio:
        return self.combined("Sub", _Ratio(0), ratio)

    def value(self, node: ast.AST) -> _Ratio:
        if isinstance(node, ast.Constant) and type(node.value) is int:
            return _Ratio(node.value)
        if isinstance(node, ast.Name) and node.id in self.named:
            return _Ratio(_dim(self.b, *self.named[node.id]))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return self.negated(self.value(node.operand))
        if isinstance(node, ast.BinOp):
            return self.binary(node)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
            parts = [self.value(a) for a in node.args]
            if node.func.id == "floor" and len(parts) == 1:
                return self.floor(parts[0])
            if node.func.id == "ceiling" and len(parts) == 1:
                return self.negated(self.floor(self.negated(parts[0])))
            if node.func.id in ("Max", "Min") and parts:
                result = parts[0]
                for part in parts[1:]:
                    result = self.combined(node.func.id, result, part)
                return result
        raise ValueError(ast.dump(node)[:80])

    def binary(self, node: ast.BinOp) -> _Ratio:
        left, right = self.value(node.left), self.value(node.right)
        if isinstance(node.op, ast.Add | ast.Sub):
            return self.combined("Add" if isinstance(node.op, ast.Add) else "Sub", left, right)
        if isinstance(node.op, ast.Mult):
            if isinstance(left.numerator, int) and isinstance(right.numerator, int):
                return _Ratio(left.numerator * right.numerator, left.denominator * right.denominator)
            product = self.b.op("Mul", [self.tensor(left.numerator), self.tensor(right.numerator)])
            return _Ratio(product, left.denominator * right.denominator)
        if isinstance(node.op, ast.Div) and isinstance(right.numerator, int) and right.numerator > 0:
            return _Ratio(self.scaled(left, right.denominator), left.denominator * right.numerator)
        raise ValueError(ast.dump(node)[:80])


def _expression(b: Emitter, text: str, named: dict[str, tuple[ir.Value, int]]) -> ir.Value | None:
    """The dim `text` computed from the graph inputs' dims, or None where it is not such an expression."""
    try:
        ratio = _DimArithmetic(b, named).floor(
            _DimArithmetic(b, named).value(ast.parse(text, mode="eval").body)
        )
    except (SyntaxError, ValueError, RecursionError):
        return None
    return (
        b.const(np.array([ratio.numerator], np.int64))
        if isinstance(ratio.numerator, int)
        else ratio.numerator
    )


def symbolic_shape_of_intermediate(node: ir.Node) -> bool:
    """A Shape of a computed rank-3+ tensor with a symbolic dim: what onnx2tf may read in its own order."""
    x = node.inputs[0] if node.inputs else None
    if x is None or x.producer() is None or x.shape is None or len(x.shape) < 3:
        return False
    return any(isinstance(d, ir.SymbolicDim) for d in x.shape)


def shape_from_inputs(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    node = standard_node(model, finding, "Shape")
    if node is None or node.graph is not model.graph:
        return "not a Shape node of the main graph"
    shape = node.inputs[0].shape
    if shape is None:
        return "the tensor's rank is unknown"
    start = node.attributes.get_int("start", 0)
    end = node.attributes.get_int("end", len(shape))
    dims = list(shape)[slice(start, end)]
    named = _input_dims(model.graph)
    if all(isinstance(d, int) for d in dims):
        return "every dim is static (simplify folds it)"
    b = Emitter(model, node)
    parts = []
    for d in dims:
        if isinstance(d, int):
            parts.append(b.const(np.array([d], np.int64)))
        elif (d.value or "?") in named:
            parts.append(_dim(b, *named[d.value]))
        elif (computed := _expression(b, d.value or "?", named)) is not None:
            parts.append(computed)
        else:
            return f"dim {d} is neither a graph input's dim nor an expression of them"
    b.replace([parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=0)])
    return None


RULES = [
    Rule(
        "shape-from-inputs",
        ("conversion-error", "divergence"),
        shape_from_inputs,
        "Shape of an intermediate as constants and the graph inputs' dims its symbols name or compute",
        ops=("Shape",),
    )
]
