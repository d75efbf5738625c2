"""onnxruntime's symbolic shape inference, run in the oracle worker (see convfix.symbolic_shapes)."""

from __future__ import annotations

from convfix.runtimes.messages import Dims, InferSymbolicShapes, SymbolicShapes


def handle(request: InferSymbolicShapes) -> SymbolicShapes:
    """Worker side: onnxruntime's symbolic shape inference over the model, the model's own intermediate
    shapes set aside; every value's dims, an int, a symbol's expression, or None."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    source = request.model
    proto = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    del proto.graph.value_info[:]
    try:
        inferred = SymbolicShapeInference.infer_shapes(proto, auto_merge=True)
    except Exception as exc:  # noqa: BLE001 - any failure of the inference leaves the model's own shapes
        return SymbolicShapes(None, f"{type(exc).__name__}: {str(exc)[:200]}")
    if inferred is None:
        return SymbolicShapes(None, "onnxruntime's symbolic shape inference gave up")
    shapes: dict[str, Dims] = {}
    for value in inferred.graph.value_info:
        kind = value.type.tensor_type
        if kind.HasField("shape"):
            shapes[value.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in kind.shape.dim
            )
    return SymbolicShapes(shapes)
