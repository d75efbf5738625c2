"""A model in the newest opset (24) and IR version (12), which onnxruntime 1.23 does not load, holding
Swish (new in 24: no opset-23 equivalent to convert down to, and onnx2tf lacks it): Swish is spelled out
by its function body first, then the model is converted down, its reference from onnx.reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions


@pytest.mark.slow
def test_a_new_op_is_spelled_out_then_the_model_converted_down(target, tmp_path):
    nodes = [
        helper.make_node("Swish", ["x"], ["s"], name="swish", alpha=1.5),
        helper.make_node("Transpose", ["s"], ["y"], name="transpose", perm=[0, 2, 1]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3])]
    model = helper.make_model(
        helper.make_graph(nodes, "g", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 24)],
        ir_version=12,
    )
    path = save(model, tmp_path / "newest.onnx")
    options = RepairOptions(output=tmp_path / "fixed.onnx", tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert report.oracle.startswith("onnx.reference")
    accepted = [s.rule for s in report.accepted_steps]
    assert accepted.index("expand-function") < accepted.index("converted-down-to-runtime-opset")
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    fixed = convfix.model_io.load(tmp_path / "fixed.onnx")
    assert fixed.opset_imports[""] == 23 and fixed.ir_version == 11  # onnxruntime 1.23 loads it now
    x = np.random.default_rng(3).standard_normal((2, 3, 4)).astype(np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": x}])
    expected = (x / (1 + np.exp(-1.5 * x))).transpose(0, 2, 1)
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-6)
