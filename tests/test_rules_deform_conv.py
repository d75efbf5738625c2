"""deform-conv-as-grid-sample: DeformConv, which onnxruntime 1.23 cannot run and onnx2tf lacks, against
onnx.reference (the oracle here) over strides, dilations, pads, groups, offset groups, mask and bias, then
through the real converter."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions
from convfix.parity import Tolerance, compare_outputs


def _model(channels=4, out=6, kernel=(3, 3), size=(7, 8), groups=2, offset_groups=2, mask=True, **attrs):
    """DeformConv with weights, offsets, mask and bias as inputs; its feeds (offsets of a few pixels)."""
    strides, dilations, pads = (
        attrs.get("strides", [1, 1]),
        attrs.get("dilations", [1, 1]),
        attrs.get("pads", [0] * 4),
    )
    out_h = (size[0] + pads[0] + pads[2] - dilations[0] * (kernel[0] - 1) - 1) // strides[0] + 1
    out_w = (size[1] + pads[1] + pads[3] - dilations[1] * (kernel[1] - 1) - 1) // strides[1] + 1
    taps = kernel[0] * kernel[1]
    rng = np.random.default_rng(0)
    feeds = {
        "x": rng.standard_normal((2, channels, *size)).astype(np.float32),
        "w": rng.standard_normal((out, channels // groups, *kernel)).astype(np.float32),
        "offset": (rng.standard_normal((2, offset_groups * taps * 2, out_h, out_w)) * 2).astype(np.float32),
        "b": rng.standard_normal(out).astype(np.float32),
    }
    names = ["x", "w", "offset", "b"]
    if mask:
        feeds["mask"] = rng.random((2, offset_groups * taps, out_h, out_w)).astype(np.float32)
        names.append("mask")
    node = helper.make_node(
        "DeformConv",
        names,
        ["y"],
        name="op",
        kernel_shape=list(kernel),
        group=groups,
        offset_group=offset_groups,
        **attrs,
    )
    inputs = [helper.make_tensor_value_info(k, TensorProto.FLOAT, list(v.shape)) for k, v in feeds.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, out, out_h, out_w])
    graph = helper.make_graph([node], "g", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)], ir_version=10), feeds


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"strides": [2, 2], "pads": [1, 2, 1, 0]},
        {"dilations": [2, 1], "pads": [2, 2, 2, 2]},
        {"groups": 1, "offset_groups": 1, "mask": False, "kernel": (2, 2)},
        {"groups": 4, "offset_groups": 4, "channels": 4, "out": 4},
    ],
)
def test_deformed_taps_match_the_reference(tmp_path, attrs):
    keyword = {
        k: attrs[k] for k in ("channels", "out", "kernel", "groups", "offset_groups", "mask") if k in attrs
    }
    model, feeds = _model(**keyword, **{k: v for k, v in attrs.items() if k not in keyword})
    expected, actual = outputs_before_and_after(
        tmp_path, model, "deform-conv-as-grid-sample", "DeformConv", [feeds]
    )
    assert compare_outputs(expected, actual, Tolerance(1e-4, 1e-4)).ok


@pytest.mark.slow
def test_a_deform_conv_converts_with_parity(target, tmp_path):
    model, feeds = _model(strides=[2, 1], pads=[1, 1, 1, 1])
    path = save(model, tmp_path / "deform.onnx")
    np.savez(tmp_path / "probe.npz", **feeds)
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, inputs=tmp_path / "probe.npz")
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert "deform-conv-as-grid-sample" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    assert onnx.load(str(path)).graph.node[0].op_type == "DeformConv"  # the input is never touched
