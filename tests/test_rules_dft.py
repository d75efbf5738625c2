"""dft-as-matmul: DFT-20 with a constant axis (onnx2tf fails on its empty optional inputs: "KeyError: ''")
against the oracle (onnx.reference speaks for DFT: onnxruntime deviates from it by 3e-4), then through
the real converter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize
from convfix.findings import Finding
from convfix.parity import Tolerance, compare_outputs
from convfix.rules import RuleContext, discover


def _model(inverse: int, onesided: int, length: int | None, complex_input: bool, axis: int = 1):
    weights = [numpy_helper.from_array(np.array(axis, np.int64), "axis")]
    names = ["x", "", "axis"]
    if length:
        weights.append(numpy_helper.from_array(np.array(length, np.int64), "length"))
        names[1] = "length"
    node = helper.make_node("DFT", names, ["y"], name="op", inverse=inverse, onesided=onesided)
    shape = [2, 10, 6, 2 if complex_input else 1]
    signal = length or shape[axis]
    out = [*shape[:-1], 2]
    out[axis] = signal // 2 + 1 if onesided else signal
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
    probe = {"x": np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
    return model, probe


CASES = [(0, 0, None, False), (1, 0, None, True), (0, 1, 12, False), (0, 0, 8, True), (1, 0, 7, True)]


@pytest.mark.parametrize(("inverse", "onesided", "length", "complex_input"), CASES)
def test_the_products_match_the_reference(tmp_path, inverse, onesided, length, complex_input):
    model, probe = _model(inverse, onesided, length, complex_input)
    expected, actual = outputs_before_and_after(tmp_path, model, "dft-as-matmul", "DFT", [probe])
    assert compare_outputs(expected, actual, Tolerance(1e-4, 1e-4)).ok


def test_an_axis_given_at_run_time_is_refused(tmp_path):
    model, _ = _model(0, 0, None, False)
    model.graph.initializer.pop(0)
    model.graph.input.append(helper.make_tensor_value_info("axis", TensorProto.INT64, []))
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    rule = next(r for r in discover().rules if r.name == "dft-as-matmul")
    reason = rule.apply(loaded, Finding("conversion-error", "", node="op", op="DFT"), RuleContext())
    assert reason == "an axis given at run time"


@pytest.mark.slow
def test_a_dft_20_converts_with_parity(target, tmp_path):
    model, probe = _model(1, 0, 8, True)
    path = save(model, tmp_path / "dft.onnx")
    plain = target.convert(path, tmp_path / "plain", [probe], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "dft-as-matmul" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    assert onnx.load(str(path)).graph.node[0].op_type == "DFT"
