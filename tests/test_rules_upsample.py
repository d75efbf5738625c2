"""upsample-as-resize: the deprecated Upsample, whose scales onnx2tf applies to the wrong dims."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, oracle


def _upsample_model(mode: str, opset: int, scales: list[float] | None = None) -> onnx.ModelProto:
    """Opset 9's Upsample takes run-time scales; given `scales`, opset 7's form with an attribute."""
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])]
    if scales is None:
        inputs.append(helper.make_tensor_value_info("scales", TensorProto.FLOAT, [4]))
        node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="op", mode=mode)
    else:
        node = helper.make_node("Upsample", ["x"], ["y"], name="op", mode=mode, scales=scales)
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * 4)]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def _probe(scales: list[float]) -> dict[str, np.ndarray]:
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 4)).astype(np.float32)
    return {"x": x, "scales": np.array(scales, np.float32)}


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample_becomes_a_resize_computing_the_same(tmp_path, mode):
    probes = [_probe([1, 1, 2, 3]), _probe([1, 1, 1.5, 2.5]), _probe([1, 2, 1.7, 1])]
    expected, actual = outputs_before_and_after(
        tmp_path, _upsample_model(mode, 9), "upsample-as-resize", "Upsample", probes
    )
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_an_opset_7_upsample_with_scales_as_attribute_too(tmp_path, mode):
    model = _upsample_model(mode, 7, scales=[1.0, 1.0, 1.5, 2.5])
    probe = {"x": _probe([])["x"]}
    (expected,), (actual,) = outputs_before_and_after(
        tmp_path, model, "upsample-as-resize", "Upsample", [probe]
    )
    np.testing.assert_allclose(actual["y"], expected["y"], rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_an_opset_9_upsample_is_wrong_plain_and_repaired(target, tmp_path):
    path = save(_upsample_model("nearest", 9), tmp_path / "up.onnx")
    probe = _probe([1, 1, 2, 3])
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted or plain.layout_problems or plain.tf_outputs[0]["y"].shape != (1, 2, 6, 12)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "upsample-as-resize" in [s.rule for s in report.accepted_steps]
    fresh = _probe([1, 1, 2, 3]) | {"x": np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_array_equal(outputs["y"], fresh["x"].repeat(2, axis=2).repeat(3, axis=3))
