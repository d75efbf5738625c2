"""Symbolic dims relinked to the graph inputs by onnxruntime's symbolic shape inference.

ONNX's shape inference knows no com.microsoft op: past the first one it names every unknown dim afresh
(`unk__N`), so a value stops saying that its first dim is the input's batch. convfix's conversion
tells unknown dims apart by those names, so a batch named twice differently becomes two dims and
onnx2tf lays the two sides of a residual Add out differently ("Dimensions must be equal, but are 64
and 17": a ViT fused by onnxruntime's optimizer). onnxruntime's symbolic shape inference carries the
inputs' symbols through its contrib ops and through shape arithmetic (`batch*sequence`).
"""

from __future__ import annotations

import re

import onnx

_ORPHAN = re.compile(r"unk__\d+")
_MAX_NODES = 20_000  # sympy's arithmetic is slow on very large graphs: past this, the shapes stay


def _orphan_symbols(proto: onnx.ModelProto) -> bool:
    """Whether ONNX's inference, given dynamic inputs, named dims afresh past an op of another domain."""
    dynamic = any(d.dim_param for v in proto.graph.input for d in v.type.tensor_type.shape.dim)
    foreign = any(n.domain not in ("", "ai.onnx") for n in proto.graph.node)
    return (
        dynamic
        and foreign
        and any(
            _ORPHAN.fullmatch(d.dim_param)
            for v in proto.graph.value_info
            for d in v.type.tensor_type.shape.dim
        )
    )


def relinked(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its intermediate shapes rederived from the inputs' symbols where ONNX's inference
    left orphan ones past a foreign op; the model unchanged when there are none or the inference fails."""
    if len(proto.graph.node) > _MAX_NODES or not _orphan_symbols(proto):
        return proto
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]
    try:
        inferred = SymbolicShapeInference.infer_shapes(bare, auto_merge=True)
    except Exception:  # noqa: BLE001 - any failure of the inference leaves the model's own shapes
        return proto
    return inferred if inferred is not None else proto
