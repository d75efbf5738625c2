"""onehot-as-equal, hardmax-as-argmax: new or reduced axes that onnx2tf places wrongly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.rules import discover

RULES = {r.name: r for r in discover().rules}


def _onehot_model(axis: int, opset: int, depth_const: int | None) -> onnx.ModelProto:
    inputs = [helper.make_tensor_value_info("indices", TensorProto.INT64, [2, 3])]
    initializers = [helper.make_tensor("values", TensorProto.FLOAT, [2], [-1.0, 4.0])]
    if depth_const is None:
        inputs.append(helper.make_tensor_value_info("depth", TensorProto.FLOAT, []))
    else:
        initializers.append(helper.make_tensor("depth", TensorProto.INT64, [], [depth_const]))
    node = helper.make_node("OneHot", ["indices", "depth", "values"], ["y"], name="op", axis=axis)
    rank3 = [None, None, None]
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, rank3)], initializers
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _hardmax_model(axis: int) -> onnx.ModelProto:
    node = helper.make_node("Hardmax", ["x"], ["y"], name="op", axis=axis)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4, 5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


INDICES = np.array([[0, 3, -1], [-5, 2, 1]], np.int64)


@pytest.mark.parametrize(("axis", "opset", "depth"), [(-1, 11, None), (1, 13, 5), (0, 11, 5), (-1, 13, 5)])
def test_onehot_places_the_new_axis_like_onnxruntime(tmp_path, axis, opset, depth):
    probe = {"indices": INDICES} | ({"depth": np.array(5.0, np.float32)} if depth is None else {})
    model = _onehot_model(axis, opset, depth)
    (expected,), (actual,) = outputs_before_and_after(tmp_path, model, "onehot-as-equal", "OneHot", [probe])
    np.testing.assert_array_equal(actual["y"], expected["y"])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_hardmax_keeps_only_the_first_maximum(tmp_path, axis):
    x = np.random.default_rng(axis % 3).integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # ties everywhere
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, _hardmax_model(axis), "hardmax-as-argmax", "Hardmax", [{"x": x}]
    )
    np.testing.assert_array_equal(actual["y"], expected["y"])


@pytest.mark.slow
def test_hardmax_over_the_first_axis_is_wrong_plain_and_repaired(target, tmp_path):
    path = save(_hardmax_model(0), tmp_path / "hardmax.onnx")
    probe = {"x": np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)}
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted or plain.layout_problems or plain.tf_outputs[0]["y"].shape != (3, 4, 5)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "hardmax-as-argmax" in [s.rule for s in report.accepted_steps]
    fresh = {"x": np.random.default_rng(1).normal(size=(3, 4, 5)).astype(np.float32)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["y"], (fresh["x"] == fresh["x"].max(axis=0)).astype(np.float32))


@pytest.mark.slow
def test_a_onehot_without_axis_is_wrong_plain_and_repaired(target, tmp_path):
    """The ONNX suite's own case (depth 12 as a graph input), on its own data."""
    suite = Path(onnx.__file__).parent / "backend/test/data/node/test_onehot_without_axis"
    path = suite / "model.onnx"
    names = [value.name for value in onnx.load(path).graph.input]
    probe = {
        name: numpy_helper.to_array(onnx.load_tensor(str(suite / "test_data_set_0" / f"input_{i}.pb")))
        for i, name in enumerate(names)
    }
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=0, atol=0)
    output = next(iter(expected))
    assert (
        not plain.converted
        or plain.layout_problems
        or plain.tf_outputs[0][output].shape != expected[output].shape
    )

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "onehot-as-equal" in [s.rule for s in report.accepted_steps]
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs[output], expected[output])
