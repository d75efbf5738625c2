"""Dynamic input dims (kept dynamic and verified at several sizes, or pinned by the user)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from convfix.findings import Finding
from convfix.matcher import ScanContext, model_detector


@model_detector
def dynamic_input_dims(model: ir.Model, context: ScanContext) -> Iterator[Finding]:
    initializers = model.graph.initializers
    for value in model.graph.inputs:
        if value.name in initializers:
            continue
        if value.shape is None:
            yield Finding(
                "unresolved-shape",
                "input of unknown rank: the converter needs at least the rank",
                subject=value.name,
                blocking=value.name in context.pinned_shapes,
            )
            continue
        dynamic = [f"{axis}:{dim}" for axis, dim in enumerate(value.shape) if not isinstance(dim, int)]
        if not dynamic:
            continue
        pin = context.pinned_shapes.get(value.name)
        pinned = pin is not None and any(
            not isinstance(dim, int) and fixed is not None
            for dim, fixed in zip(value.shape, pin, strict=False)
        )
        reason = f"dynamic dims {', '.join(dynamic)}" + (
            "; pinned by --input-shape" if pinned else "; kept dynamic and verified at several sizes"
        )
        yield Finding("dynamic-shape", reason, subject=value.name, blocking=pinned)
