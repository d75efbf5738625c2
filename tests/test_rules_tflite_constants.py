"""rewrites/tflite_constants.py: where only the .tflite diverges (the SavedModel verifies), the
divergence is localized in the .tflite and claimed as a tflite-divergence; infinite constants, which
TFLite's converter writes as +-FLT_MAX, are computed at run time."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix


def _entr_like() -> onnx.ModelProto:
    """torch.special.entr's branches as the dynamo exporter writes them: -inf where x < 0, +inf
    where x > 10 (a second infinity, of the other sign, in the same constant), x elsewhere."""
    constants = {
        "zero": np.array(0, np.float32),
        "ten": np.array(10, np.float32),
        "limits": np.array([-np.inf, np.inf, 0.5], np.float32).reshape(3, 1),
    }
    nodes = [
        helper.make_node("Less", ["x", "zero"], ["negative"]),
        helper.make_node("Greater", ["x", "ten"], ["large"]),
        helper.make_node("Or", ["negative", "large"], ["outside"]),
        helper.make_node("Where", ["outside", "limits", "x"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "entr_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 8])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_infinite_constants_reach_the_tflite_as_infinities(target, tmp_path):
    probes = [{"x": np.linspace(-5, 15, 24, dtype=np.float32).reshape(3, 8)}]
    path = save(_entr_like(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, probe_set=probes, backend=target)
    step = next(s for s in report.accepted_steps if s.rule == "infinities-at-run-time")
    assert step.finding.kind == "tflite-divergence" and step.finding.op == "Where"
    assert any("localized in the .tflite" in note for note in report.notes)
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok
