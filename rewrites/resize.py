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

With roi/scales/sizes given at run time (the node suite; PyTorch's `F.interpolate(x, size=skip.shape[2:])`)
the maps cannot be computed beforehand, and no parameter may be frozen: `resize-runtime-parameters`
has the graph compute them, per axis of static length n, from the parameters it is given: the output
length and scale as onnxruntime derives them, x_original of Range(0, m) per coordinate mode (in
onnxruntime's float32, its double where it uses one), then a Gather of the rounded, clipped indices
(nearest) or a MatMul with W = kernel(j - x) over a constant row j around the axis, folded onto the
edges or renormalized (exclude_outside, antialias). Axes whose parameter provably keeps them (scale 1,
or x's own dim through Shape/Slice/Concat) are left alone, dynamic or not.
"""

from __future__ import annotations

import math
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
from convfix.rewriting import Emitter, default_opset, find_node
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


_STAND_IN = 2  # the length a dynamic, unresized dim is given while the maps are worked out


def _maps(node: ir.Node) -> list[_AxisMap] | str:
    """The non-identity per-axis maps, or why the node is not rewritten."""
    x = node.inputs[0]
    if x.dtype is None or x.shape is None:
        return "the input's dtype or rank is unknown"
    # A dynamic dim (a batch) may stay dynamic where the Resize keeps it: scale 1, no crop. Its map is
    # the identity at any length; the geometry is worked out at a stand-in length.
    dynamic = [a for a, d in enumerate(x.shape) if not isinstance(d, int)]
    shape = [d if isinstance(d, int) else _STAND_IN for d in x.shape]
    geometry = _geometry(node, shape)
    if isinstance(geometry, str):
        return geometry
    crop = node.attributes.get_string("coordinate_transformation_mode", "") == "tf_crop_and_resize"
    if any(crop or geometry.scales[a] != 1.0 or geometry.lengths[a] != _STAND_IN for a in dynamic):
        return "a dynamic dim is resized: its map cannot be written out"
    if max(shape + geometry.lengths) > MAX_LENGTH:
        return f"an axis is longer than {MAX_LENGTH}: its map would be too large"
    weights = _coefficients(node)
    if isinstance(weights, str):
        return weights
    try:
        maps = [
            _axis_map(node, axis, length, geometry, weights)
            for axis, length in enumerate(shape)
            if axis not in dynamic
        ]
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
        [
            helper.make_tensor_value_info(
                x.name, x.dtype.value, [d if isinstance(d, int) else None for d in x.shape]
            )
        ],
        [helper.make_tensor_value_info(y.name, x.dtype.value, None)],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _separability_problem(node: ir.Node, opset: int, maps: list[_AxisMap]) -> str | None:
    """None when the composed maps give what the oracle gives for the whole node on a random input."""
    x = node.inputs[0]
    rng = np.random.default_rng(0)
    dtype = x.dtype.numpy()
    size = [d if isinstance(d, int) else _STAND_IN for d in x.shape]
    if x.dtype in FLOATS:
        data = rng.uniform(-1, 1, size=size).astype(dtype)
    else:
        data = rng.integers(0, 100, size=size).astype(dtype)
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


class _Emitter(Emitter):
    """An Emitter for the per-axis maps that declares each value's static shape."""

    def __init__(self, model: ir.Model, node: ir.Node) -> None:
        super().__init__(model, node)
        self.dtype = node.inputs[0].dtype

    def shaped(self, op_type: str, inputs: list[ir.Value], dims: list, **attributes) -> ir.Value:
        value = self.op(op_type, inputs, **attributes)
        value.dtype, value.shape = self.dtype, ir.Shape(dims)
        return value

    def const(self, array: np.ndarray) -> ir.Value:
        value = super().const(array)
        value.dtype, value.shape = ir.tensor(array).dtype, ir.Shape(array.shape)
        return value

    def apply(self, y: ir.Value, m: _AxisMap) -> ir.Value:
        dims = list(y.shape)
        dims[m.axis] = len(m.matrix)
        if m.selects():
            indices = self.const(m.matrix.argmax(axis=1).astype(np.int64))
            return self.shaped("Gather", [y, indices], dims, axis=m.axis)
        matrix = m.matrix.astype(self.dtype.numpy())
        rank = len(dims)
        if m.axis == rank - 2:
            y = self.shaped("MatMul", [self.const(matrix), y], dims)
        elif m.axis == rank - 1:
            y = self.shaped("MatMul", [y, self.const(matrix.T)], dims)
        else:
            perm = [d for d in range(rank) if d != m.axis] + [m.axis]
            last = self.shaped("Transpose", [y], [y.shape[d] for d in perm], perm=perm)
            moved = self.shaped("MatMul", [last, self.const(matrix.T)], [dims[d] for d in perm])
            y = self.shaped("Transpose", [moved], dims, perm=[int(d) for d in np.argsort(perm)])
        if m.bias.any():
            bias = m.bias.astype(self.dtype.numpy()).reshape([-1] + [1] * (rank - 1 - m.axis))
            y = self.shaped("Add", [y, self.const(bias)], dims)
        return y


def _rewrite(model: ir.Model, node: ir.Node, maps: list[_AxisMap]) -> None:
    emitter = _Emitter(model, node)
    y = node.inputs[0]
    for m in reversed(maps):
        y = emitter.apply(y, m)
    if y is node.inputs[0]:
        y = emitter.shaped("Identity", [y], list(y.shape))
    emitter.replace([y])


def _plan(node: ir.Node, opset: int) -> list[_AxisMap] | str:
    if opset < 11:
        return "Resize-10 (scales as the second input) is not handled"
    maps = _maps(node)
    if isinstance(maps, str):
        return maps
    return _separability_problem(node, opset, maps) or maps


def _every_resize(model: ir.Model, finding: Finding, plan: Callable, rewrite: Callable) -> str | None:
    """The finding's Resize, and with it every other Resize the same rule can spell out: onnx2tf gets
    them wrong alike, and a conversion round is dear."""
    target = find_node(model, finding)
    if target is None or target.op_type != "Resize" or target.domain not in ("", "ai.onnx"):
        return "no Resize at the finding"
    opset = default_opset(model)
    first = plan(target, opset)
    if isinstance(first, str):
        return f"{target.name}: {first}"
    others = [n for n, _ in walk(model.graph) if n.op_type == "Resize" and n.domain in ("", "ai.onnx")]
    plans = [(target, first)] + [(n, plan(n, opset)) for n in others if n is not target]
    for node, planned in plans:
        if not isinstance(planned, str):
            rewrite(model, node, planned)
    return None


def resize_as_linear_maps(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    return _every_resize(model, finding, _plan, _rewrite)


# Run-time parameters: the same per-axis maps, computed by the graph from the parameters it is given.

F32 = np.float32
COORDINATES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
RADIUS = {"linear": 1, "cubic": 2}  # the kernel's reach, in input pixels at scale 1


def _parameter(node: ir.Node, index: int) -> ir.Value | str | None:
    """roi (1), scales (2) or sizes (3); None when absent or known empty, a reason when it may be either."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None:
        return None
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        return value if tensor.size else None
    if value.shape is None or not value.shape.is_static():
        return f"input {index} ({value.name}) may be empty or not: its length is not static"
    return value if math.prod(value.shape) else None


def _source(value: ir.Value, x: ir.Value) -> list | None:
    """What each element of a 1-D int or float value is known to be: a number, ("dim", d) for x's dim d,
    or None; spelled out through Concat, Cast, Shape and a Slice of a Shape (PyTorch's `size=` export)."""
    tensor = ir.convenience.get_const_tensor(value)
    if tensor is not None:
        return [float(v) for v in tensor.numpy().reshape(-1)]
    node = value.producer()
    if node is None or value.shape is None or not value.shape.is_static() or len(value.shape) != 1:
        return None
    unknown = [None] * value.shape[0]
    if node.op_type == "Cast":
        return _source(node.inputs[0], x) or unknown
    if node.op_type == "Concat":
        parts = [_source(v, x) for v in node.inputs]
        return unknown if None in parts else [e for p in parts for e in p]
    if node.op_type == "Shape" and node.inputs[0] is x and x.shape is not None:
        dims = [("dim", d) for d in range(len(x.shape))]
        start, end = node.attributes.get_int("start", 0), node.attributes.get_int("end", len(dims))
        return dims[start:end] if len(dims[start:end]) == len(unknown) else unknown
    if node.op_type == "Slice" and len(node.inputs) in (3, 4):
        whole, starts, ends = (_source(v, x) for v in node.inputs[:3])
        if whole and starts and ends and len(starts) == len(ends) == 1:
            picked = whole[int(starts[0]) : int(ends[0])]
            return picked if len(picked) == len(unknown) else unknown
    return unknown


@dataclass
class _Runtime:
    """What the graph needs to resize along each axis at run time."""

    x: ir.Value
    axes: list[int]  # every axis the parameters cover, in their order
    resized: list[int]  # the axes not known to keep their length, each of static length
    scales: ir.Value | None
    sizes: ir.Value | None
    roi: ir.Value | None  # tf_crop_and_resize only


def _keeps(element, axis: int, x: ir.Value, by_scale: bool) -> bool:
    if by_scale:
        return element == 1.0
    return element == ("dim", axis) or (isinstance(x.shape[axis], int) and element == float(x.shape[axis]))


def _kept(node: ir.Node, x: ir.Value, axes: list[int], scales: ir.Value | None, sizes: ir.Value) -> set:
    """The axes whose parameter provably leaves them as they are: scale 1, or the length x has there
    (not with a crop, nor with sizes under a keep_aspect_ratio_policy, where every axis takes part)."""
    policy = node.attributes.get_string("keep_aspect_ratio_policy", "stretch")
    crop = node.attributes.get_string("coordinate_transformation_mode", "") == "tf_crop_and_resize"
    if crop or (policy != "stretch" and scales is None):
        return set()
    elements = _source(scales if scales is not None else sizes, x) or []
    return {a for a, e in zip(axes, elements, strict=False) if _keeps(e, a, x, scales is not None)}


def _runtime_plan(node: ir.Node, opset: int) -> _Runtime | str:
    if opset < 11:
        return "Resize-10 (scales as the second input) is not handled"
    x = node.inputs[0]
    if x.dtype is None or x.shape is None:
        return "the input's dtype or rank is unknown"
    problem = _coefficients(node)
    if isinstance(problem, str):
        return problem
    mode = node.attributes.get_string("mode", "nearest")
    if mode != "nearest" and x.dtype not in FLOATS:
        return f"{x.dtype.name} data with a map that does not only select (the runtimes round)"
    if node.attributes.get_string("nearest_mode", "round_prefer_floor") not in NEAREST:
        return "unknown nearest_mode"
    crop = node.attributes.get_string("coordinate_transformation_mode", "half_pixel") == "tf_crop_and_resize"
    if (
        not crop
        and node.attributes.get_string("coordinate_transformation_mode", "half_pixel") not in COORDINATES
    ):
        return "unknown coordinate_transformation_mode"
    given = [_parameter(node, i) for i in (1, 2, 3)]
    problem = next((g for g in given[1:] if isinstance(g, str)), None)
    if problem:
        return problem
    roi, scales, sizes = given
    roi = roi if crop else None
    if (scales is None) == (sizes is None):
        return "exactly one of scales and sizes must be given"
    if all(v is None or ir.convenience.get_const_tensor(v) is not None for v in (roi, scales, sizes)):
        return "its parameters are constants (resize-as-linear-maps' case)"
    rank = len(x.shape)
    axes = node.attributes.get_ints("axes", None)
    axes = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    kept = _kept(node, x, axes, scales, sizes)
    resized = [a for a in axes if a not in kept]
    if not all(isinstance(x.shape[a], int) for a in resized):
        return "an axis that may be resized has no static length"
    if max([x.shape[a] for a in resized], default=0) > MAX_LENGTH:
        return f"an axis is longer than {MAX_LENGTH}: its map would be too large"
    return _Runtime(x, axes, resized, scales, sizes, roi)


class _Graph(Emitter):
    """An Emitter for float32 arithmetic on run-time values, called as g(op_type, *inputs, **attributes)
    (shapes are the runtime's business)."""

    def __call__(self, op_type: str, *inputs: ir.Value, **attributes) -> ir.Value:
        return self.op(op_type, list(inputs), **attributes)

    def const(self, value, dtype=F32) -> ir.Value:
        return super().const(np.asarray(value, dtype))

    def element(self, vector: ir.Value, k: int, to: ir.DataType = ir.DataType.FLOAT) -> ir.Value:
        """vector[k] as a [1] tensor of dtype `to`."""
        return self("Cast", self("Gather", vector, self.const([k], np.int64), axis=0), to=to)

    def attribute(self, name: str, default):
        get = {str: "get_string", float: "get_float", int: "get_int"}[type(default)]
        return getattr(self.node.attributes, get)(name, default)


def _scale_and_length(g: _Graph, plan: _Runtime, axis: int) -> tuple[ir.Value, ir.Value]:
    """The axis' scale (float [1]) and output length (int64 [1]), as the runtimes derive them."""
    k, n = plan.axes.index(axis), plan.x.shape[axis]
    if plan.scales is not None:
        scale = g.element(plan.scales, k)
        return scale, g("Cast", g("Mul", scale, g.const(n)), to=ir.DataType.INT64)
    policy = g.attribute("keep_aspect_ratio_policy", "stretch")
    if policy == "stretch":
        length = g.element(plan.sizes, k, ir.DataType.INT64)
        return g("Div", g("Cast", length, to=ir.DataType.FLOAT), g.const(n)), length
    wanted = g("Cast", plan.sizes, to=ir.DataType.FLOAT)
    ratios = g("Div", wanted, g.const([plan.x.shape[a] for a in plan.axes]))
    scale = g("ReduceMin" if policy == "not_larger" else "ReduceMax", ratios)  # every element: [1]
    rounded = g("Floor", g("Add", g("Mul", scale, g.const(n)), g.const(0.5)))
    return scale, g("Cast", rounded, to=ir.DataType.INT64)


def _coordinates(g: _Graph, plan: _Runtime, axis: int, scale: ir.Value, length: ir.Value) -> ir.Value:
    """x_original of every output position as an [m, 1] column, in float32 as onnxruntime computes it (an
    output of length 1 under align_corners, pytorch_half_pixel or tf_crop_and_resize its fixed point)."""
    n = plan.x.shape[axis]
    out = g("Cast", length, to=ir.DataType.FLOAT)
    i = g("Reshape", g("Range", g.const(0.0), g("Squeeze", out), g.const(1.0)), g.const([-1, 1], np.int64))
    mode = g.attribute("coordinate_transformation_mode", "half_pixel")
    if mode == "asymmetric":
        return g("Div", i, scale)
    if mode == "align_corners":  # the spec's length: input length x scale, fractional when scales are given
        length = out if plan.scales is None else g("Mul", scale, g.const(n))
        divisor = g("Where", g("Equal", length, g.const(1.0)), g.const(1.0), g("Sub", length, g.const(1.0)))
        return _unless_single(g, length, g("Div", g("Mul", i, g.const(n - 1)), divisor), g.const(0.0))
    if mode == "half_pixel_symmetric":  # onnxruntime adds the offset in double: nearest's floor sees it
        adjustment = g("Div", out, g("Mul", scale, g.const(n)))
        offset = g("Mul", g.const(n / 2), g("Sub", g.const(1.0), adjustment))
        wide = [g("Cast", v, to=ir.DataType.DOUBLE) for v in (offset, i, scale, g.const(0.5))]
        centered = g("Div", g("Add", wide[1], wide[3]), wide[2])
        shifted = g("Sub", g("Add", wide[0], centered), wide[3])
        return g("Cast", shifted, to=ir.DataType.FLOAT)
    half_pixel = g("Sub", g("Div", g("Add", i, g.const(0.5)), scale), g.const(0.5))
    if mode == "half_pixel":
        return half_pixel
    if mode == "pytorch_half_pixel":
        return _unless_single(g, out, half_pixel, g.const(0.0))
    k = plan.axes.index(axis)
    start, end = g.element(plan.roi, k), g.element(plan.roi, len(plan.axes) + k)
    spread = g("Div", g("Mul", g("Mul", i, g("Sub", end, start)), g.const(n - 1)), _less_one(g, out))
    crop = g("Add", g("Mul", start, g.const(n - 1)), spread)
    middle = g("Mul", g("Mul", g.const(0.5), g("Add", start, end)), g.const(n - 1))
    return _unless_single(g, out, crop, middle)


def _less_one(g: _Graph, out: ir.Value) -> ir.Value:
    """m - 1 as a divisor: 1 where m is 1 (the position is then taken from elsewhere)."""
    return g("Max", g("Sub", out, g.const(1.0)), g.const(1.0))


def _unless_single(g: _Graph, out: ir.Value, spread: ir.Value, single: ir.Value) -> ir.Value:
    return g("Where", g("Greater", out, g.const(1.0)), spread, single)


def _nearest(g: _Graph, x: ir.Value, n: int) -> ir.Value:
    """The index each output position takes, clipped into the axis: int64 [m, 1]."""
    rounding = {
        "round_prefer_floor": lambda: g("Ceil", g("Sub", x, g.const(0.5))),
        "round_prefer_ceil": lambda: g("Floor", g("Add", x, g.const(0.5))),
        "floor": lambda: g("Floor", x),
        "ceil": lambda: g("Ceil", x),
    }[g.attribute("nearest_mode", "round_prefer_floor")]()
    return g("Cast", g("Clip", rounding, g.const(0.0), g.const(float(n - 1))), to=ir.DataType.INT64)


def _kernel(g: _Graph, d: ir.Value) -> ir.Value:
    """Linear's triangle or cubic's kernel with its A, at the distances d >= 0."""
    one = g.const(1.0)
    if g.attribute("mode", "nearest") == "linear":
        return g("Relu", g("Sub", one, d))
    a = g.attribute("cubic_coeff_a", -0.75)
    inner = g("Add", g("Mul", g("Mul", g("Sub", g("Mul", g.const(a + 2), d), g.const(a + 3)), d), d), one)
    cubed = g(
        "Mul", g("Add", g("Mul", g("Sub", g("Mul", g.const(a), d), g.const(5 * a)), d), g.const(8 * a)), d
    )
    near = g("Where", g("Less", d, g.const(2.0)), g("Sub", cubed, g.const(4 * a)), g.const(0.0))
    return g("Where", g("LessOrEqual", d, one), inner, near)


def _matrix(g: _Graph, x: ir.Value, scale: ir.Value, n: int) -> ir.Value:
    """W, [m, n]: the kernel at every input position j of a [1, E] row around the axis, stretched by
    1/scale when antialias downscales, then the positions outside the axis either dropped with the row
    renormalized (exclude_outside) or added onto the edge they are clamped to, as both runtimes do.
    Without antialias, x is first clipped to [-1, n]: no tap reaches past radius + 1 outside."""
    antialias = g.attribute("antialias", 0)
    exclude = g.attribute("exclude_outside", 0)
    radius = RADIUS[g.attribute("mode", "nearest")]
    # With antialias the kernel reaches radius/scale, and scale >= 1/(2n) where the output is not empty.
    pad = 0 if exclude else (2 * radius * n + 3 if antialias else radius + 1)
    j = np.arange(-pad, n + pad)
    if not antialias:
        x = g("Clip", x, g.const(-1.0), g.const(float(n)))
    d = g("Sub", g.const(j.reshape(1, -1)), x)
    if antialias:
        d = g("Mul", d, g("Min", scale, g.const(1.0)))
    weights = _kernel(g, g("Abs", d))
    if antialias or exclude:
        weights = g("Div", weights, g("MatMul", weights, g.const(np.ones((len(j), 1)))))
    if pad:
        fold = (np.clip(j, 0, n - 1).reshape(-1, 1) == np.arange(n)).astype(F32)
        weights = g("MatMul", weights, g.const(fold))
    return weights


def _outside(g: _Graph, x: ir.Value, n: int) -> ir.Value:
    """tf_crop_and_resize's points outside the input, [m, 1] bool."""
    return g("Or", g("Less", x, g.const(0.0)), g("Greater", x, g.const(float(n - 1))))


def _within(g: _Graph, tail: ir.Value) -> ir.Value:
    """0 .. Q-1 as a [1, Q] row."""
    positions = g("Range", g.const(0, np.int64), g("Squeeze", tail), g.const(1, np.int64))
    return g("Reshape", positions, g.const([1, -1], np.int64))


def _along(g: _Graph, plan: _Runtime, y: ir.Value, axis: int, tail: ir.Value) -> tuple[ir.Value, ir.Value]:
    """y seen as [P, n, Q] (Q = tail, the dims after the axis) resized along n, and m. Nearest gathers
    from the rank-2 view [P, n*Q] at the flattened indices (exact for any dtype), the rest multiplies
    [m, n] W into the rank-3 view; tf_crop_and_resize's fill goes in on the rank-2 view [P, m*Q]. onnx2tf
    converts these right where the dims are run-time values; not a Transpose (it drops the perm when it
    cannot see the dims), nor a Where on a rank-3 value."""
    n = plan.x.shape[axis]
    scale, length = _scale_and_length(g, plan, axis)
    x = _coordinates(g, plan, axis, scale, length)
    if g.attribute("mode", "nearest") == "nearest":
        rows = g(
            "Reshape", y, g("Concat", g.const([-1], np.int64), g("Mul", tail, g.const([n], np.int64)), axis=0)
        )
        indices = g("Add", g("Mul", _nearest(g, x, n), tail), _within(g, tail))  # [m, Q]
        out = g("Gather", rows, g("Reshape", indices, g.const([-1], np.int64)), axis=1)
    else:
        matrix = _matrix(g, x, scale, n)
        if plan.x.dtype != ir.DataType.FLOAT:
            matrix = g("Cast", matrix, to=plan.x.dtype)
        out = g("MatMul", matrix, g("Reshape", y, g("Concat", g.const([-1, n], np.int64), tail, axis=0)))
    if plan.roi is None:
        return out, length
    everywhere = g("GreaterOrEqual", _within(g, tail), g.const(0, np.int64))
    outside = g("Reshape", g("And", _outside(g, x, n), everywhere), g.const([1, -1], np.int64))
    fill = g.const(g.attribute("extrapolation_value", 0.0), plan.x.dtype.numpy())
    flat = g("Concat", g.const([-1], np.int64), g("Mul", tail, length), axis=0)  # [P, m*Q]
    return g("Where", outside, fill, g("Reshape", out, flat)), length


def _dim(g: _Graph, x: ir.Value, d: int) -> ir.Value:
    if isinstance(x.shape[d], int):
        return g.const([x.shape[d]], np.int64)
    return g("Gather", g("Shape", x), g.const([d], np.int64), axis=0)


def _runtime_rewrite(model: ir.Model, node: ir.Node, plan: _Runtime) -> None:
    """Axis by axis, last first, on rank-2 and rank-3 views (onnx2tf mislays values of higher rank whose
    dims it cannot see); at the end, one Reshape to the output's shape."""
    g = _Graph(model, node)
    x = plan.x
    dims = [_dim(g, x, d) for d in range(len(x.shape))]
    y = x
    for axis in sorted(plan.resized, reverse=True):
        tail = g.const([1], np.int64)
        for d in dims[axis + 1 :]:
            tail = g("Mul", tail, d)
        y, dims[axis] = _along(g, plan, y, axis, tail)
    g.replace([g("Reshape", y, g("Concat", *dims, axis=0))])


def resize_runtime_parameters(model: ir.Model, finding: Finding, context: RuleContext) -> str | None:
    return _every_resize(model, finding, _runtime_plan, _runtime_rewrite)


RULES = [
    Rule(
        "resize-as-linear-maps",
        ("conversion-error", "divergence"),
        resize_as_linear_maps,
        "Resize with constant parameters as per-axis maps from onnx.reference: Gather (nearest) or MatMul",
        ops=("Resize",),
    ),
    Rule(
        "resize-runtime-parameters",
        ("conversion-error", "divergence"),
        resize_runtime_parameters,
        "Resize with run-time scales/sizes/roi as per-axis maps computed in the graph: Gather or MatMul",
        ops=("Resize",),
    ),
]
