"""Generated probes respect what the graph asks of integer inputs, where the graph says it."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
from onnx import TensorProto, helper, numpy_helper

from convfix import preconditions, probes


def _model(nodes, inputs, outputs, initializers=()) -> ir.Model:
    """As convfix loads it: with the types shape inference gives every value."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return ir.from_proto(onnx.shape_inference.infer_shapes(proto))


def _int(name, shape, elem=TensorProto.INT64):
    return helper.make_tensor_value_info(name, elem, shape)


def _generated(model: ir.Model) -> list[dict[str, np.ndarray]]:
    return probes.make_probes(probes.input_specs(model), constraints=preconditions.constraints(model))


def test_an_integer_divisor_input_holds_no_zero_even_through_casts_and_reshapes():
    nodes = [
        helper.make_node("Cast", ["b"], ["b32"], to=TensorProto.INT32),
        helper.make_node("Reshape", ["b32", "shape"], ["b2"]),
        helper.make_node("Div", ["a", "b2"], ["y"]),
    ]
    shape = numpy_helper.from_array(np.array([64], np.int64), "shape")
    model = _model(
        nodes,
        [_int("a", [64], TensorProto.INT32), _int("b", [8, 8])],
        [_int("y", [64], TensorProto.INT32)],
        [shape],
    )
    assert preconditions.constraints(model) == {"b": preconditions.Constraint(nonzero=True)}
    for probe in _generated(model):
        assert (probe["b"] != 0).all() and (probe["a"] == 0).any()  # the dividend keeps its zeros


def test_gather_indices_stay_inside_the_axis_negative_ones_included():
    table = numpy_helper.from_array(np.zeros((3, 7), np.float32), "table")
    node = helper.make_node("Gather", ["table", "idx"], ["y"], axis=0)
    model = _model([node], [_int("idx", [500])], [helper.make_tensor_value_info("y", 1, [500, 7])], [table])
    values = np.concatenate([p["idx"] for p in _generated(model)])
    assert values.min() == -3 and values.max() == 2


def test_indices_into_a_dynamic_axis_follow_that_axis_size_in_each_probe():
    node = helper.make_node("GatherElements", ["data", "idx"], ["y"], axis=1)
    inputs = [helper.make_tensor_value_info("data", 1, [2, "n"]), _int("idx", [2, 4])]
    model = _model([node], inputs, [helper.make_tensor_value_info("y", 1, [2, 4])])
    for probe in _generated(model):
        n = probe["data"].shape[1]
        assert (-n <= probe["idx"]).all() and (probe["idx"] < n).all()


def test_a_shape_input_stays_small_and_positive():
    node = helper.make_node("ConstantOfShape", ["shape"], ["y"])
    model = _model([node], [_int("shape", [6])], [helper.make_tensor_value_info("y", 1, None)])
    for probe in _generated(model):
        assert (probe["shape"] >= 1).all() and np.prod(probe["shape"]) <= preconditions.SHAPE_VALUE_CAP**6


def test_arithmetic_hides_the_precondition_and_the_default_range_stays():
    nodes = [helper.make_node("Sub", ["b", "one"], ["c"]), helper.make_node("Div", ["a", "c"], ["y"])]
    one = numpy_helper.from_array(np.array(1, np.int64), "one")
    model = _model(nodes, [_int("a", [4]), _int("b", [4])], [_int("y", [4])], [one])
    assert preconditions.constraints(model) == {}


def test_structured_inputs_axes_reshape_targets_split_sizes_and_scales():
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["r"]),
        helper.make_node("Reshape", ["x", "target"], ["flat"]),
        helper.make_node("Split", ["x", "parts"], ["p0", "p1", "p2"], axis=1),
        helper.make_node("Resize", ["x", "", "scales"], ["big"]),
    ]
    inputs = [
        helper.make_tensor_value_info("x", 1, [2, 9, 4, 4]),
        _int("axes", [2]),
        _int("target", [3]),
        _int("parts", [3]),
        helper.make_tensor_value_info("scales", 1, [4]),
    ]
    outputs = [helper.make_tensor_value_info(n, 1, None) for n in ("r", "flat", "p0", "p1", "p2", "big")]
    model = _model(nodes, inputs, outputs)
    for probe in _generated(model):
        axes = probe["axes"] % 4
        assert len(set(axes)) == 2 and (probe["axes"] >= -4).all() and (probe["axes"] < 4).all()
        assert list(probe["target"]) == [1, 1, -1]
        assert probe["parts"].sum() == 9 and (probe["parts"] > 0).all()
        assert list(probe["scales"][:2]) == [1, 1] and (probe["scales"][2:] >= 1.5).all()
