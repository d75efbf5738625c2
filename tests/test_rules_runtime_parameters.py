"""pad-runtime-pads, unsqueeze-runtime-axes, squeeze-runtime-axes: parameters given at run time (the
node suite's Pad and Unsqueeze cases), checked on several values of them against onnxruntime, then
through the real converter; converted-down-to-runtime-opset: a model newer than onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions
from convfix.parity import Tolerance, compare_outputs

X = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4) - 7.5


def _model(node: onnx.NodeProto, feeds: dict[str, np.ndarray], rank: int, opset: int = 21, ir: int = 10):
    kinds = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64}
    inputs = [helper.make_tensor_value_info(k, kinds[v.dtype], list(v.shape)) for k, v in feeds.items()]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [f"d{i}" for i in range(rank)])
    graph = helper.make_graph([node], "g", inputs, [output])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)


PAD_CASES = [
    ("edge", [1, 0, 2, 0, 2, 1], None),
    ("reflect", [0, 2, 3, 1, 1, 3], None),
    ("wrap", [1, 1, 3, 0, 2, 1], None),
    ("constant", [1, -1, 2, 0, 2, -2], None),  # negative pads crop
    ("constant", [2, 1, 0, 3], [2, -3]),  # opset 18 axes, given at run time
    ("edge", [1, 2, 1, 0], [-1, 1]),
]


@pytest.mark.parametrize(("mode", "pads", "axes"), PAD_CASES)
def test_pads_given_at_run_time(tmp_path, mode, pads, axes):
    feeds = {"x": X, "pads": np.array(pads, np.int64)}
    names = ["x", "pads", "value" if mode == "constant" else ""]
    if mode == "constant":
        feeds["value"] = np.array(2.5, np.float32)
    if axes is not None:
        names.append("axes")
        feeds["axes"] = np.array(axes, np.int64)
    model = _model(helper.make_node("Pad", names, ["y"], name="op", mode=mode), feeds, rank=3)
    # the same graph on other pads: the values stay an input, any of them works (within what the
    # runtimes agree on: reflect takes at most n - 1 on a dim of n, and onnxruntime writes zeros
    # where a crop takes a whole dim before padding it)
    other = {**feeds, "pads": np.clip(feeds["pads"], 0, 1)[::-1].copy()}
    expected, actual = outputs_before_and_after(tmp_path, model, "pad-runtime-pads", "Pad", [feeds, other])
    assert compare_outputs(expected, actual, Tolerance(0, 0)).ok


@pytest.mark.parametrize(
    ("op", "axes", "other"),
    [
        ("Unsqueeze", [0], [2]),
        ("Unsqueeze", [-1, 1], [0, 2]),
        ("Unsqueeze", [4, 0], [1, 3]),
        ("Squeeze", [0], [2]),
        ("Squeeze", [-3, 0], [2, 0]),
    ],
)
def test_axes_given_at_run_time(tmp_path, op, axes, other):
    data = X.reshape(1, 2, 1, 3, 4) if op == "Squeeze" else X
    feeds = {"x": data, "axes": np.array(axes, np.int64)}
    rank = data.ndim + (len(axes) if op == "Unsqueeze" else -len(axes))
    model = _model(helper.make_node(op, ["x", "axes"], ["y"], name="op"), feeds, rank)
    probes = [feeds, {**feeds, "axes": np.array(other, np.int64)}]  # the same graph, other axes
    expected, actual = outputs_before_and_after(tmp_path, model, f"{op.lower()}-runtime-axes", op, probes)
    assert compare_outputs(expected, actual, Tolerance(0, 0)).ok


@pytest.mark.slow
def test_run_time_parameters_convert_with_parity(target, tmp_path):
    """Pad (edge, run-time pads and axes), Unsqueeze and Squeeze with run-time axes, side by side in
    opset 24 and IR version 12, which onnxruntime 1.23 does not load: the model is converted down
    first, its reference coming from onnx.reference. (Chained, they would leave onnx2tf tensors whose
    dims depend on run-time values, whose Shape it may report in its own order.)"""
    feeds = {
        "x": X,
        "ones": X.reshape(1, 2, 1, 3, 4),
        "pads": np.array([1, 2, 0, 1], np.int64),
        "pad_axes": np.array([2, 1], np.int64),
        "axes": np.array([0, 3], np.int64),
        "squeeze_axes": np.array([-3], np.int64),
    }
    nodes = [
        helper.make_node("Pad", ["x", "pads", "", "pad_axes"], ["padded"], name="pad", mode="edge"),
        helper.make_node("Unsqueeze", ["x", "axes"], ["wide"], name="unsqueeze"),
        helper.make_node("Squeeze", ["ones", "squeeze_axes"], ["narrow"], name="squeeze"),
    ]
    kinds = {k: TensorProto.FLOAT if v.dtype == np.float32 else TensorProto.INT64 for k, v in feeds.items()}
    inputs = [helper.make_tensor_value_info(k, kinds[k], list(v.shape)) for k, v in feeds.items()]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}{i}" for i in range(rank)])
        for name, rank in (("padded", 3), ("wide", 5), ("narrow", 4))
    ]
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 24)], ir_version=12)
    path = save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "probe.npz", **feeds)
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, inputs=tmp_path / "probe.npz")
    report = convfix.repair(path, options, backend=target)
    assert report.status == "repaired", report.to_json()
    assert report.oracle.startswith("onnx.reference")
    accepted = {s.rule for s in report.accepted_steps}
    wanted = {
        "converted-down-to-runtime-opset",
        "pad-runtime-pads",
        "unsqueeze-runtime-axes",
        "squeeze-runtime-axes",
    }
    assert wanted <= accepted
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
