"""channel-shuffle-as-gather: ShuffleNet's channel shuffle with dynamic batch, height and width, which
onnx2tf converts with its 5-D axes misplaced, converts and matches as one Gather (real converter)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions

pytestmark = pytest.mark.slow
GROUPS, WIDTH = 2, 4
CHANNELS = GROUPS * WIDTH


def _shuffled_then_depthwise() -> onnx.ModelProto:
    """x [n, 8, h, w] -> channel shuffle (targets computed from x's shape, as TorchScript writes them)
    -> a depthwise Conv that needs the channels where they belong."""
    ints = lambda name, values: numpy_helper.from_array(np.array(values, np.int64), name)  # noqa: E731
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Shape", ["x"], ["batch"], start=0, end=1),
        helper.make_node("Shape", ["x"], ["spatial"], start=2, end=4),
        helper.make_node("Concat", ["batch", "split_dims", "spatial"], ["split"], axis=0),
        helper.make_node("Concat", ["batch", "merged_dims", "spatial"], ["merge"], axis=0),
        helper.make_node("Reshape", ["x", "split"], ["grouped"]),
        helper.make_node("Transpose", ["grouped"], ["swapped"], perm=[0, 2, 1, 3, 4]),
        helper.make_node("Reshape", ["swapped", "merge"], ["shuffled"]),
        helper.make_node("Conv", ["shuffled", "w"], ["y"], group=CHANNELS, pads=[1, 1, 1, 1]),
    ]
    weights = numpy_helper.from_array(rng.standard_normal((CHANNELS, 1, 3, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", CHANNELS, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", CHANNELS, "h", "w"])],
        initializer=[weights, ints("split_dims", [GROUPS, WIDTH]), ints("merged_dims", [CHANNELS])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_dynamic_channel_shuffle_converts_as_a_gather(target, tmp_path):
    source = save(_shuffled_then_depthwise(), tmp_path / "shuffle.onnx")
    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True, output=tmp_path / "fixed.onnx")
    report = convfix.repair(source, options, backend=target)
    assert report.status == "repaired", report.reason
    assert "channel-shuffle-as-gather" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    assert {"Gather"} <= {n.op_type for n in onnx.load(tmp_path / "fixed.onnx").graph.node}
    x = np.random.default_rng(1).standard_normal((3, CHANNELS, 5, 7)).astype(np.float32)
    (y,) = target.run(tmp_path / "tf", [{"x": x}])[0].values()
    shuffled = x.reshape(3, GROUPS, WIDTH, 5, 7).transpose(0, 2, 1, 3, 4).reshape(x.shape)
    weights = onnx.numpy_helper.to_array(_shuffled_then_depthwise().graph.initializer[0])
    padded = np.pad(shuffled, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros_like(x)
    for dy in range(3):
        for dx in range(3):
            expected += padded[:, :, dy : dy + 5, dx : dx + 7] * weights[None, :, 0, dy, dx, None, None]
    np.testing.assert_allclose(y, expected, atol=1e-4)
