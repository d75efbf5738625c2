"""Symbolic dims relinked to the graph inputs by onnxruntime's symbolic shape inference.

ONNX's shape inference knows no com.microsoft op: past the first one it names every unknown dim afresh
(`unk__N`), so a value stops saying that its first dim is the input's batch. It does the same past
shape arithmetic it cannot follow in plain ONNX (GPT-2's TorchScript export views through
`x.size()[:-1] + (nf,)`, so every block's output has an orphan batch). convfix's conversion
tells unknown dims apart by those names, so a batch named twice differently becomes two dims and
onnx2tf lays the two sides of a residual Add out differently ("Dimensions must be equal, but are 64
and 17": a ViT fused by onnxruntime's optimizer). onnxruntime's symbolic shape inference carries the
inputs' symbols through its contrib ops and through shape arithmetic (`batch*sequence`). It evaluates
the model's shape arithmetic (sympy, numpy), so it runs in the oracle worker, behind the boundary
(runtimes/shapes.py).
"""

from __future__ import annotations

import re

import onnx_ir as ir

from convfix import model_io, oracle

_ORPHAN = re.compile(r"unk__\d+")
_MAX_NODES = 20_000  # sympy's arithmetic is slow on very large graphs: past this, the shapes stay


def _orphan_values(model: ir.Model) -> list[ir.Value]:
    """The values whose dims ONNX's inference named afresh, in a model with dynamic inputs."""
    graph = model.graph
    dynamic = any(v.shape is not None and not v.shape.is_static() for v in graph.inputs)
    if not dynamic or len(graph) > _MAX_NODES:
        return []
    return [
        v
        for n in graph
        for v in n.outputs
        if v.shape is not None and any(_ORPHAN.fullmatch(str(d)) for d in v.shape if not isinstance(d, int))
    ]


def relink(model: ir.Model) -> str | None:
    """Give the values of `model` (in place) the shapes onnxruntime's symbolic shape inference
    rederives, where ONNX's inference left orphan dim names; returns why not, or None (also when there
    was nothing to do).

    A shape is taken only where it keeps the value's rank and every static dim."""
    orphans = _orphan_values(model)
    if not orphans:
        return None
    with model_io.runnable(model) as source:
        reply = oracle.symbolic_shapes(source)
    if reply.shapes is None:
        return reply.error
    for value in orphans:
        dims = reply.shapes.get(value.name)
        if dims is None or len(dims) != len(value.shape):
            continue
        if all(not isinstance(old, int) or old == new for old, new in zip(value.shape, dims, strict=True)):
            value.shape = ir.Shape(dims)
    return None
