"""materialize-constant-of-shape: weights built by ConstantOfShape, which onnx2tf's Conv cannot take."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions

pytestmark = pytest.mark.slow


def _model() -> onnx.ModelProto:
    """Conv whose 64x64x9x9 weight (above the optimizer's folding limit) is a ConstantOfShape."""
    shape = numpy_helper.from_array(np.array([64, 64, 9, 9], np.int64), "wshape")
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1], [0.01])
    nodes = [
        helper.make_node("ConstantOfShape", ["wshape"], ["w"], name="weights", value=fill),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[4, 4, 4, 4]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64, 16, 16])],
        initializer=[shape],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_constant_of_shape_weights_become_initializers_and_convert(target, tmp_path):
    path = save(_model(), tmp_path / "m.onnx")
    x = np.random.default_rng(0).standard_normal((1, 64, 16, 16)).astype(np.float32)
    reference = ort.InferenceSession(str(path)).run(None, {"x": x})[0]
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [{"y": reference}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and "axes don't match" in plain.error

    report = convfix.repair(path, RepairOptions(output=tmp_path / "fixed.onnx"), target=target)
    assert report.status == "repaired", report.to_json()
    assert "materialize-constant-of-shape" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok
    fixed = onnx.load(str(tmp_path / "fixed.onnx"))
    assert "ConstantOfShape" not in {n.op_type for n in fixed.graph.node}
