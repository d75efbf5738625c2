"""Resize as constant per-axis maps: a Gather of indices where it only selects, else a MatMul.

onnx2tf 1.29 gets Resize wrong more often than any other op: silent mismatches (half_pixel_symmetric,
pytorch_half_pixel, align_corners, cubic with its A or exclude_outside, antialias, nearest_mode,
keep_aspect_ratio_policy, axes; PyTorch's bilinear `align_corners=True`) and failed conversions
(tf_crop_and_resize: `unexpected keyword argument 'images'`). With a static input shape and constant
roi/scales/sizes, a Resize is separable: along each resized axis the output is a fixed linear map of
the input (affine for tf_crop_and_resize, whose points outside the crop take extrapolation_value).
That map is not re-implemented here: its matrix is what `onnx.reference`'s own one-axis interpolation
gives on the rows of an identity, so every mode and option comes by construction. Before anything is
rewritten, the composed maps are checked against the oracle (onnxruntime, else `onnx.reference`) on
the whole node with a random input; a mismatch is refused. A map that only selects (every nearest
mode) becomes a Gather of constant indices, exact for any dtype; any other a MatMul with the constant
matrix in the data's float dtype (integer data is refused: the runtimes round), plus an Add for
extrapolated points. Every value keeps a static, declared shape. Axes longer than 4096 are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_ir as ir
from onnx import helper, numpy_helper
from onnx.reference.ops import op_resize

from convfix import oracle
from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rewriting import find_node, replace_node
from convfix.rules import Rule, RuleContext

MAX_LENGTH = 4096  # the longest input or output axis a map may have: matrices of at most 4096 x 4096
# The float dtypes a MatMul may take, each with how closely the maps must meet the oracle's Resize.
FLOATS = {
    ir.DataType.FLOAT: 1e-4,
    ir.DataType.DOUBLE: 1e-4,
    ir.DataType.FLOAT16: 1e-2,
    ir.DataType.BFLOAT16: 6e-2,
}


class _Row(np.ndarray):
    """A row of the identity that `onnx.reference`'s 1-D interpolation takes as one data point: the
    interpolated point comes out as the whole row of the map (its `.item()` keeps the vector)."""

    def item(self) -> np.ndarray:
        return np.asarray(self)


@dataclass
class _AxisMap:
    """Along one axis: output = matrix @ input + bias (the bias holds tf_crop_and_resize's
    extrapolation_value at the points outside the crop, where the matrix row is zero)."""

    axis: int
    matrix: np.ndarray  # (out, in), float64
    bias: np.ndarray  # (out,)

    def selects(self) -> bool:
        """Every output element is one input element: a Gather of indices."""
        one_hot = np.isin(self.matrix, (0.0, 1.0)).all() and (self.matrix.sum(axis=1) == 1).all()
        return bool(one_hot) and not self.bias.any()

    def is_identity(self) -> bool:
        rows, cols = self.matrix.shape
        return rows == cols and np.array_equal(self.matrix, np.eye(rows)) and not self.bias.any()


def _constant(node: ir.Node, index: int) -> np.ndarray | str | None:
    """roi (1), scales (2) or sizes (3) flattened, None when absent or empty, a reason when computed."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is None:
        return f"input {index} ({value.name}) is a run-time value: its maps cannot be computed beforehand"
    array = tensor.numpy().reshape(-1)
    return array if array.size else None


@dataclass
class _Geometry:
    """Per dim of the input, as `onnx.reference` derives them: scale, output length, roi bounds."""

    scales: list
    lengths: list[int]
    rois: list[np.ndarray]


def _geometry(node: ir.Node, shape: list[int]) -> _Geometry | str:
    crop = node.attributes.get_string("coordinate_transformation_mode", "") == "tf_crop_and_resize"
    roi, scales, sizes = (_constant(node, i) for i in (1, 2, 3))
    roi = roi if crop else None  # only tf_crop_and_resize reads it
    problem = next((c for c in (roi, scales, sizes) if isinstance(c, str)), None)
    if problem:
        return problem
    rank = len(shape)
    axes = node.attributes.get_ints("axes", None)
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    geometry = _Geometry([1.0] * rank, list(shape), [np.array([0.0, 1.0])] * rank)
    for i, axis in enumerate(axes):
        if roi is not None:
            geometry.rois[axis] = np.array([roi[i], roi[len(axes) + i]])
        if sizes is not None:
            geometry.scales[axis], geometry.lengths[axis] = sizes[i] / shape[axis], int(sizes[i])
        elif scales is not None:
            geometry.scales[axis], geometry.lengths[axis] = scales[i], int(float(scales[i]) * shape[axis])
        else:
            return "neither scales nor sizes is given"
    policy = node.attributes.get_string("keep_aspect_ratio_policy", "stretch")
    if sizes is not None and policy != "stretch":
        chosen = [geometry.scales[a] for a in axes]
        scale = min(chosen) if policy == "not_larger" else max(chosen)
        for axis in axes:
            geometry.scales[axis], geometry.lengths[axis] = scale, int(scale * shape[axis] + 0.5)
    return geometry


def _coefficients(node: ir.Node) -> Callable[[float, float], np.ndarray] | str:
    """The interpolation weights `onnx.reference` uses for the node's mode and options."""
    mode = node.attributes.get_string("mode", "nearest")
    antialias = node.attributes.get_int("antialias", 0)
    if mode == "nearest":
        if antialias:
            return "antialias with mode nearest is undefined"
        nearest_mode = node.attributes.get_string("nearest_mode", "round_prefer_floor")
        return lambda ratio, scale: op_resize._nearest_coeffs(ratio, mode=nearest_mode)
    if mode == "linear":
        return op_resize._linear_coeffs_antialias if antialias else op_resize._linear_coeffs
    if mode == "cubic":
        cubic = op_resize._cubic_coeffs_antialias if antialias else op_resize._cubic_coeffs
        a = node.attributes.get_float("cubic_coeff_a", -0.75)
        return lambda ratio, scale: cubic(ratio, scale, A=a)
    return f"unknown mode {mode!r}"


def _axis_map(node: ir.Node, axis: int, length: int, geometry: _Geometry, weights: Callable) -> _AxisMap:
    """Interpolate each output point of one axis from the identity's rows: row x of the map."""
    points = np.empty(length, dtype=object)
    for k, row in enumerate(np.eye(length).view(_Row)):
        points[k] = row
    out = geometry.lengths[axis]
    matrix, bias = np.zeros((out, length)), np.zeros(out)
    for x in range(out):
        value = op_resize._interpolate_1d_with_x(
            points,
            geometry.scales[axis],
            out,
            np.int64(x),
            weights,
            roi=geometry.rois[axis],
            extrapolation_value=node.attributes.get_float("extrapolation_value", 0.0),
            coordinate_transformation_mode=node.attributes.get_string(
                "coordinate_transformation_mode", "half_pixel"
            ),
            exclude_outside=bool(node.attributes.get_int("exclude_outside", 0)),
        )
        if np.ndim(value) == 0:  # outside tf_crop_and_resize's crop
            bias[x] = value
        else:
            matrix[x] = value
    return _AxisMap(axis, matrix, bias)


def _maps(node: ir.Node) -> list[_AxisMap] | str:
    """The non-identity per-axis maps, or why the node is not rewritten."""
    x = node.inputs[0]
    if x.dtype is None or x.shape is None or not x.shape.is_static():
        return "the input's dtype or shape is not static"
    shape = [int(d) for d in x.shape]
    geometry = _geometry(node, shape)
    if isinstance(geometry, str):
        return geometry
    if max(shape + geometry.lengths) > MAX_LENGTH:
        return f"an axis is longer than {MAX_LENGTH}: its map would be too large"
    weights = _coefficients(node)
    if isinstance(weights, str):
        return weights
    try:
        maps = [_axis_map(node, axis, length, geometry, weights) for axis, length in enumerate(shape)]
    except (ValueError, TypeError, RuntimeError) as exc:
        return f"onnx.reference cannot interpolate this Resize: {exc}"
    maps = [m for m in maps if not m.is_identity()]
    if x.dtype not in FLOATS and not all(m.selects() for m in maps):
        return f"{x.dtype.name} data with a map that does not only select (the runtimes round)"
    return maps


def _composed(data: np.ndarray, maps: list[_AxisMap]) -> np.ndarray:
    """The maps applied in numpy, last axis first (onnx.reference interpolates the first axis last)."""
    y = data.astype(np.float64)
    for m in reversed(maps):
        y = np.moveaxis(np.tensordot(m.matrix, y, axes=([1], [m.axis])), 0, m.axis)
        y = y + m.bias.reshape([-1] + [1] * (y.ndim - 1 - m.axis))
    return y


def _alone(node: ir.Node, opset: int) -> onnx.ModelProto:
    """The node with its constants as weights, in a model of its own (a run-time roi, which only
    tf_crop_and_resize reads, given as empty)."""
    x, y = node.inputs[0], node.outputs[0]
    weights = []
    for value in node.inputs[1:]:
        tensor = None if value is None else ir.convenience.get_const_tensor(value)
        if value is not None:
            array = np.zeros(0, value.dtype.numpy()) if tensor is None else tensor.numpy()
            weights.append(numpy_helper.from_array(array, value.name))
    graph = helper.make_graph(
        [ir.serde.serialize_node(node)],
        "resize",
        [helper.make_tensor_value_info(x.name, x.dtype.value, list(x.shape))],
        [helper.make_tensor_value_info(y.name, x.dtype.value, None)],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _separability_problem(node: ir.Node, opset: int, maps: list[_AxisMap]) -> str | None:
    """None when the composed maps give what the oracle gives for the whole node on a random input."""
    x = node.inputs[0]
    rng = np.random.default_rng(0)
    dtype = x.dtype.numpy()
    if x.dtype in FLOATS:
        data = rng.uniform(-1, 1, size=list(x.shape)).astype(dtype)
    else:
        data = rng.integers(0, 100, size=list(x.shape)).astype(dtype)
    try:
        reference = oracle.evaluate(ir.serde.deserialize_model(_alone(node, opset)), [{x.name: data}])
    except oracle.OracleError as exc:
        return f"no runtime runs this Resize alone: {exc}"
    expected = reference.outputs[0][node.outputs[0].name].astype(np.float64)
    actual = _composed(data, maps)
    tolerance = FLOATS.get(x.dtype, 0.0)  # integers: exact
    if expected.shape != actual.shape or not np.allclose(actual, expected, rtol=tolerance, atol=tolerance):
        return f"the per-axis maps miss {reference.oracle}'s Resize (not separable, or the runtimes differ)"
    return None


class _Emitter:
    """Emits the per-axis maps before the node, each value with its static shape declared."""

    def __init__(self, node: ir.Node) -> None:
        self.tape = ir.tape.Tape()
        self.prefix = node.name
        self.dtype = node.inputs[0].dtype

    def op(self, op_type: str, inputs: list[ir.Value], dims: list[int], **attributes) -> ir.Value:
        name = f"{self.prefix}_{op_type}_{len(self.tape.nodes)}"
        value = self.tape.op(op_type, inputs, attributes or None, name=name)
        value.dtype, value.shape = self.dtype, ir.Shape(dims)
        return value

    def const(self, array: np.ndarray) -> ir.Value:
        name = f"{self.prefix}_Constant_{len(self.tape.nodes)}"
        tensor = ir.tensor(array)
        value = self.tape.op("Constant", [], {"value": tensor}, name=name)
        value.dtype, value.shape = tensor.dtype, ir.Shape(array.shape)
        return value

    def apply(self, y: ir.Value, m: _AxisMap) -> ir.Value:
        dims = list(y.shape)
        dims[m.axis] = len(m.matrix)
        if m.selects():
            indices = self.const(m.matrix.argmax(axis=1).astype(np.int64))
            return self.op("Gather", [y, indices], dims, axis=m.axis)
        matrix = m.matrix.astype(self.dtype.numpy())
        rank = len(dims)
        if m.axis == rank - 2:
            y = self.op("MatMul", [self.const(matrix), y], dims)
        elif m.axis == rank - 1:
            y = self.op("MatMul", [y, self.const(matrix.T)], dims)
        else:
            perm = [d for d in range(rank) if d != m.axis] + [m.axis]
            last = self.op("Transpose", [y], [y.shape[d] for d in perm], perm=perm)
            moved = self.op("MatMul", [last, self.const(matrix.T)], [dims[d] for d in perm])
            y = self.op("Transpose", [moved], dims, perm=[int(d) for d in np.argsort(perm)])
        if m.bias.any():
            bias = m.bias.astype(self.dtype.numpy()).reshape([-1] + [1] * (rank - 1 - m.axis))
            y = self.op("Add", [y, self.const(bias)], dims)
        return y


def _rewrite(node: ir.Node, maps: list[_AxisMap]) -> None:
    emitter = _Emitter(node)
    y = node.inputs[0]
    for m in reversed(maps):
        y = emitter.apply(y, m)
    if y is node.inputs[0]:
        y = emitter.op("Identity", [y], list(y.shape))
    node.graph.insert_before(node, emitter.tape.nodes)
    replace_node(node, [y])


def _opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", 18))


def _plan(node: ir.Node, opset: int) -> list[_AxisMap] | str:
    if opset < 11:
        return "Resize-10 (scales as the second input) is not handled"
    maps = _maps(node)
    if isinstance(maps, str):
        return maps
    return _separability_problem(node, opset, maps) or maps


def resize_as_linear_maps(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    """The finding's Resize, and with it every other Resize this rule can spell out: onnx2tf gets
    them wrong alike, and a conversion round is dear."""
    target = find_node(model, finding)
    if target is None or target.op_type != "Resize" or target.domain not in ("", "ai.onnx"):
        return "no Resize at the finding"
    opset = _opset(model)
    plan = _plan(target, opset)
    if isinstance(plan, str):
        return f"{target.name}: {plan}"
    others = [n for n, _ in walk(model.graph) if n.op_type == "Resize" and n.domain in ("", "ai.onnx")]
    plans = [(target, plan)] + [(n, _plan(n, opset)) for n in others if n is not target]
    for node, maps in plans:
        if not isinstance(maps, str):
            _rewrite(node, maps)
    return None


RULES = [
    Rule(
        "resize-as-linear-maps",
        ("conversion-error", "divergence"),
        resize_as_linear_maps,
        "Resize with constant parameters as per-axis maps from onnx.reference: Gather (nearest) or MatMul",
        ops=("Resize",),
    )
]
