"""depth-space-spelled-out: DepthToSpace/SpaceToDepth, which onnx2tf applies to the wrong axis."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "depth-space-spelled-out")


def _model(op_type: str, batch, attrs: dict) -> onnx.ModelProto:
    shape_in, shape_out = (
        ([batch, 8, 3, 2], [batch, 2, 6, 4])
        if op_type == "DepthToSpace"
        else ([batch, 2, 6, 4], [batch, 8, 3, 2])
    )
    graph = helper.make_graph(
        [helper.make_node(op_type, ["x"], ["y"], name="op", blocksize=2, **attrs)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape_in)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape_out)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.mark.parametrize(
    ("op_type", "attrs"),
    [("DepthToSpace", {"mode": "DCR"}), ("DepthToSpace", {"mode": "CRD"}), ("SpaceToDepth", {})],
)
def test_the_spelled_out_form_moves_the_same_elements(tmp_path, op_type, attrs):
    model = normalize.normalize(model_io.load(save(_model(op_type, "n", attrs), tmp_path / "m.onnx")))
    shape = (2, 8, 3, 2) if op_type == "DepthToSpace" else (2, 2, 6, 4)
    probes = [
        {"x": np.arange(b * np.prod(shape[1:]), dtype=np.float32).reshape(b, *shape[1:])} for b in (1, 3)
    ]
    expected = oracle.evaluate(model, probes).outputs
    assert RULE.apply(model, Finding("divergence", "", node="op", op=op_type), RuleContext()) is None
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.slow
def test_depth_to_space_converts_on_the_right_axis_once_spelled_out(target, tmp_path):
    path = save(_model("DepthToSpace", 2, {"mode": "CRD"}), tmp_path / "d2s.onnx")
    x = np.random.default_rng(0).normal(size=(2, 8, 3, 2)).astype(np.float32)
    (expected,) = oracle.evaluate(model_io.load(path), [{"x": x}]).outputs
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted or plain.layout_problems or plain.tf_outputs[0]["y"].shape != (2, 2, 6, 4)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[{"x": x}])
    assert report.status == "repaired", report.to_json()
    assert "depth-space-spelled-out" in [s.rule for s in report.accepted_steps]
    (outputs,) = target.run(tmp_path / "tf", [{"x": x}])
    np.testing.assert_array_equal(outputs["y"], expected["y"])
