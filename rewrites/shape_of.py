"""Shape of an intermediate tensor, read from the graph inputs' dims instead.

onnx2tf holds many rank-3+ intermediates channels-last and returns their Shape in its own dim order
(seen: a dynamic DistilBERT's attention reshapes built from the Shape of a [batch, 2, seq, 8] tensor
diverge by 1e-2). Where every dim of the tensor is either static or a symbol that names a dim of a
graph input (`batch`, `seq`: torch.export and shape inference carry the names through), the Shape is
a Concat of constants and Shapes of those inputs, which onnx2tf keeps as they are. Exact while the
symbols are right; the probes give dims of different names different sizes, so a wrong one shows.
A detector flags such Shapes before conversion: the damage surfaces far downstream (a Reshape or an
Add with incompatible shapes), never at the Shape.
"""

from __future__ import annotations

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
    unknown = [str(d) for d in dims if not isinstance(d, int) and (d.value or "?") not in named]
    if unknown:
        return f"dims {unknown} name no dim of a graph input"
    b = Emitter(model, node)
    parts = [
        b.const(np.array([d], np.int64)) if isinstance(d, int) else _dim(b, *named[d.value]) for d in dims
    ]
    b.replace([parts[0] if len(parts) == 1 else b.op("Concat", parts, axis=0)])
    return None


RULES = [
    Rule(
        "shape-from-inputs",
        ("conversion-error", "divergence"),
        shape_from_inputs,
        "Shape of an intermediate as constants and the graph inputs' dims its symbols name",
        ops=("Shape",),
    )
]
