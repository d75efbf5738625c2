"""Constructs onnx2tf converts without error but computes wrongly (silent mismatches seen here)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx_ir as ir
from convfix.rewrites.arange_indexing import arange_grid
from convfix.rewrites.pool_indices import indices_used
from convfix.rewrites.shape_of import symbolic_shape_of_intermediate
from convfix.rewrites.slice_bounds import counts_from_end
from convfix.rewrites.static_shapes import static_reshape_target

from convfix.findings import Finding, node_op
from convfix.matcher import ScanContext, node_detector


def constant_steps(node: ir.Node) -> np.ndarray | None:
    """A Slice's steps, if they are a constant (opset >= 10 form)."""
    if len(node.inputs) < 5 or node.inputs[4] is None:
        return None
    tensor = ir.convenience.get_const_tensor(node.inputs[4])
    return None if tensor is None else tensor.numpy()


@node_detector("Slice")
def negative_slice_step(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    steps = constant_steps(node)
    if steps is not None and (steps < 0).any():
        reason = "Slice with a negative step: onnx2tf converts it without reversing (a silent mismatch)"
        yield Finding("divergence", reason, node=node.name, op="Slice", path=path)


@node_detector("Slice")
def slice_bound_from_the_end(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    no_axes = len(node.inputs) < 4 or node.inputs[3] is None
    if no_axes and counts_from_end(node):
        reason = "Slice without axes and a bound counting from the end: onnx2tf slices from 0 or to the end"
        yield Finding("divergence", reason, node=node.name, op="Slice", path=path)


@node_detector("Shape")
def shape_of_a_channels_last_candidate(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if not path and symbolic_shape_of_intermediate(node):
        reason = "Shape of a computed rank-3+ tensor with dynamic dims: onnx2tf may return its own dim order"
        yield Finding("divergence", reason, node=node.name, op="Shape", path=path)


@node_detector("GatherND")
def indexing_by_arange_grid(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if arange_grid(node) is not None:
        reason = "GatherND by broadcast aranges: onnx2tf lays out its rank-4+ index tensors as images"
        yield Finding("divergence", reason, node=node.name, op="GatherND", path=path)


@node_detector("RoiAlign")
def roi_align_as_crop_and_resize(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    reason = "RoiAlign: onnx2tf's crop_and_resize takes one sample per bin and fails on some boxes"
    yield Finding("divergence", reason, node=node.name, op="RoiAlign", path=path)


@node_detector("Reshape")
def reshape_to_a_computed_target(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if static_reshape_target(node) is not None:
        reason = (
            "Reshape to a computed target that has a constant spelling: onnx2tf knows none of the output's "
            "dims, and its layout guesses downstream go wrong (attention heads split from a dynamic batch)"
        )
        yield Finding("divergence", reason, node=node.name, op="Reshape", path=path)


@node_detector("DequantizeLinear")
def per_channel_weight_dequantized(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    """A QDQ model's per-channel weights (onnxruntime's quantize_static, per_channel=True)."""
    weight = ir.convenience.get_const_tensor(node.inputs[0])
    scale = node.inputs[1].shape if len(node.inputs) > 1 and node.inputs[1] is not None else None
    if weight is not None and scale is not None and scale.is_static() and np.prod(scale.numpy()) > 1:
        reason = (
            "DequantizeLinear of a per-channel constant weight: onnx2tf lays the scale along another "
            "axis of the folded weight (a silent mismatch)"
        )
        yield Finding("divergence", reason, node=node.name, op="DequantizeLinear", path=path)


@node_detector("QuantizeLinear")
def quantized_activation(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    """Every QuantizeLinear: onnx2tf returns the dequantized float for the integer ONNX defines
    (found one per conversion by the localizer on a QDQ CNN: five conversions for five of them)."""
    reason = "QuantizeLinear: onnx2tf returns the dequantized float, not the integer (a silent mismatch)"
    yield Finding("divergence", reason, node=node.name, op="QuantizeLinear", path=path)


@node_detector("DynamicQuantizeLinear")
def dynamically_quantized_activation(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    """onnxruntime's quantize_dynamic puts one before every MatMulInteger; the localizer found them one
    per conversion, and a generic rule tried first on such a finding left a transformer unconvertible."""
    reason = (
        "DynamicQuantizeLinear: onnx2tf returns the dequantized float, not the uint8 ONNX defines "
        "(a silent mismatch)"
    )
    yield Finding("divergence", reason, node=node.name, op="DynamicQuantizeLinear", path=path)


@node_detector("QLinearConv", "QLinearMatMul", "com.microsoft::QLinearAdd", "com.microsoft::QLinearMul")
def integer_linear_op(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    """onnx2tf fails on QLinearConv and returns other values for QLinearMatMul; a QOperator ResNet
    holds 20 QLinearConvs, found one per conversion by the localizer until the conversions ran out,
    and once they were spelled out onnx2tf's QLinearAdd laid a residual sum channels-last beside a
    channels-first one (the conversion failed)."""
    reason = f"{node.op_type}: onnx2tf fails on it or computes other integers than ONNX defines"
    yield Finding("divergence", reason, node=node.name, op=node_op(node), path=path)


@node_detector("MaxPool")
def max_pool_indices(node: ir.Node, path: str, context: ScanContext) -> Iterator[Finding]:
    if indices_used(node) and node.attributes.get_int("storage_order", 0) == 0:
        reason = "MaxPool's indices: onnx2tf flattens them channels-last (a silent mismatch past one channel)"
        yield Finding("divergence", reason, node=node.name, op="MaxPool", path=path)
