"""constant-output-from-input: graph outputs that are constants (what the dynamo exporter writes for
`torch.arange(5)` or a static input's shape), which onnx2tf leaves out of the Keras model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, oracle


def _model() -> onnx.ModelProto:
    """y = Relu(x); positions, an int64 initializer; flags, a bool Constant node's output."""
    nodes = [
        helper.make_node("Relu", ["x"], ["y"], name="relu"),
        helper.make_node(
            "Constant", [], ["flags"], name="flags", value=numpy_helper.from_array(np.array([True, False]))
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 5]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, [5]),
            helper.make_tensor_value_info("flags", TensorProto.BOOL, [2]),
        ],
        [numpy_helper.from_array(np.arange(5, dtype=np.int64), "positions")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.slow
def test_constant_outputs_fail_plain_and_are_kept_once_computed_from_the_input(target, tmp_path):
    path = save(_model(), tmp_path / "m.onnx")
    probes = [{"x": np.random.default_rng(i).normal(size=(2, 5)).astype(np.float32)} for i in range(2)]
    expected = oracle.evaluate(convfix.model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=1e-4, atol=1e-4)
    assert not plain.converted and "outputs for 3 ONNX outputs" in (plain.error or ""), plain.error

    options = RepairOptions(output=tmp_path / "fixed.onnx", tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert {s.rule for s in report.accepted_steps} >= {"constant-output-from-input"}
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    fixed = onnx.load(str(tmp_path / "fixed.onnx"))
    assert [o.name for o in fixed.graph.output] == ["y", "positions", "flags"]
