"""roi-align-sampled: RoiAlign (avg) against onnxruntime's kernel on rois inside, across and beyond
the image edges, both coordinate modes and opset 10's form, then through the real converter (plain
onnx2tf's crop_and_resize fails at run time on the node suite's boxes)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions
from convfix.parity import Tolerance, compare_outputs

ROIS = np.array(
    [[0, 0, 9, 9], [0, 5, 4, 9], [5, 5, 9, 9], [-3, -2, 4.5, 3.2], [8.5, 7, 14, 12], [2.2, 2.2, 2.4, 2.3]],
    np.float32,
)


def _model(opset: int, **attributes) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    feeds = {
        "x": np.random.default_rng(0).standard_normal((2, 3, 10, 12)).astype(np.float32),
        "rois": ROIS,
        "batch": np.array([0, 1, 1, 0, 1, 0], np.int64),
    }
    node = helper.make_node("RoiAlign", ["x", "rois", "batch"], ["y"], name="op", **attributes)
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 10, 12]),
        helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["r", 4]),
        helper.make_tensor_value_info("batch", TensorProto.INT64, ["r"]),
    ]
    heights = attributes.get("output_height", 1), attributes.get("output_width", 1)
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["r", 3, *heights])
    graph = helper.make_graph([node], "g", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8), feeds


CASES = [
    (16, {"coordinate_transformation_mode": "half_pixel"}),
    (16, {}),  # half_pixel by default
    (16, {"coordinate_transformation_mode": "output_half_pixel", "spatial_scale": 0.5}),
    (10, {}),  # opset 10: no coordinate mode, output_half_pixel's arithmetic
]


@pytest.mark.parametrize(("opset", "mode"), CASES)
def test_roi_align_matches_onnxruntime(tmp_path, opset, mode):
    model, feeds = _model(opset, output_height=3, output_width=4, sampling_ratio=2, **mode)
    fewer = {**feeds, "rois": feeds["rois"][:2] + 0.75, "batch": feeds["batch"][:2]}
    expected, actual = outputs_before_and_after(
        tmp_path, model, "roi-align-sampled", "RoiAlign", [feeds, fewer]
    )
    assert compare_outputs(expected, actual, Tolerance(1e-5, 1e-5)).ok


def test_max_mode_is_refused(tmp_path):
    from convfix import model_io, normalize
    from convfix.findings import Finding
    from convfix.rules import RuleContext, discover

    model, _ = _model(16, mode="max", sampling_ratio=2)
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    rule = next(r for r in discover().rules if r.name == "roi-align-sampled")
    why = rule.apply(loaded, Finding("divergence", "", node="op", op="RoiAlign"), RuleContext())
    assert why is not None and "max" in why


@pytest.mark.slow
def test_roi_align_converts_with_parity(target, tmp_path):
    model, feeds = _model(16, output_height=5, output_width=5, sampling_ratio=2, spatial_scale=1.0)
    path = save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "probe.npz", **feeds)
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, inputs=tmp_path / "probe.npz")
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert "roi-align-sampled" in {s.rule for s in report.accepted_steps}
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
