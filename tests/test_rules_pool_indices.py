"""maxpool-column-major-indices, maxpool-indices-as-window-argmax, maxunpool-as-scatter: MaxPool's flat
indices and their inverse."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

POOL = {"kernel_shape": [2, 3], "strides": [2, 2], "pads": [0, 1, 1, 0]}


def _model(nodes, inputs, outputs) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def _pool_then_unpool(storage_order: int, channels: int = 3) -> onnx.ModelProto:
    """MaxPool's indices as an output, and MaxUnpool putting the maxima back in place."""
    return _model(
        [
            helper.make_node("MaxPool", ["x"], ["v", "i"], name="pool", storage_order=storage_order, **POOL),
            helper.make_node("MaxUnpool", ["v", "i"], ["y"], name="op", **POOL),
        ],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, channels, 7, 6])],
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, [2, channels, 4, 3]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, channels, 7, 6]),
        ],
    )


def _pool_only(batch: int | str = 2) -> onnx.ModelProto:
    return _model(
        [helper.make_node("MaxPool", ["x"], ["v", "i"], name="pool", **POOL)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 7, 6])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [batch, 3, 4, 3]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [batch, 3, 4, 3]),
        ],
    )


def _probe(seed: int, channels: int = 3) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).permutation(2 * channels * 42).reshape(2, channels, 7, 6)
    return {"x": x.astype(np.float32)}


def test_maxunpool_puts_each_maximum_back_at_its_index(tmp_path):
    probes = [_probe(0), _probe(1)]
    expected, actual = outputs_before_and_after(
        tmp_path, _pool_then_unpool(0), "maxunpool-as-scatter", "MaxUnpool", probes
    )
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


def test_column_major_indices_are_respelled_from_row_major_ones(tmp_path):
    """The indices are a graph output; as MaxUnpool's input they stay row-major (no MaxUnpool takes
    column-major ones): only the graph output changes order."""
    model = _pool_then_unpool(1)
    del model.graph.node[1]
    del model.graph.output[1]
    probes = [_probe(0), _probe(1)]
    expected, actual = outputs_before_and_after(
        tmp_path, model, "maxpool-column-major-indices", "MaxPool", probes, node="pool", op_stays=True
    )
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(got["i"], want["i"])


@pytest.mark.parametrize(
    "pool",
    [
        POOL,
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
        {"kernel_shape": [2, 2], "dilations": [2, 2]},
    ],
    ids=["pads", "ceil-mode", "dilated"],
)
def test_window_argmax_gives_the_indices_of_onnxruntimes_max_pool(tmp_path, pool):
    """Ties included: the probes' rounded values repeat within windows, and the first largest tap
    must win as in onnxruntime's kernel."""
    model = _model(
        [helper.make_node("MaxPool", ["x"], ["v", "i"], name="pool", **pool)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 7, 6])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 3, "h", "w"]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3, "h", "w"]),
        ],
    )
    probes = [
        {"x": np.round(np.random.default_rng(seed).normal(size=(2, 3, 7, 6))).astype(np.float32)}
        for seed in (0, 1)
    ]
    expected, actual = outputs_before_and_after(
        tmp_path, model, "maxpool-indices-as-window-argmax", "MaxPool", probes, node="pool", op_stays=True
    )
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(got["i"], want["i"])
        np.testing.assert_array_equal(got["v"], want["v"])


def test_an_output_shape_other_than_the_default_is_refused(tmp_path):
    """onnxruntime and the ONNX reference disagree on what such an output_shape means."""
    model = _model(
        [
            helper.make_node(
                "MaxUnpool", ["v", "i", "shape"], ["y"], name="op", kernel_shape=[2, 2], strides=[2, 2]
            )
        ],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 1, 2, 2]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [1, 1, 2, 2]),
            helper.make_tensor_value_info("shape", TensorProto.INT64, [4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, None, None])],
    )
    loaded = model_io.load(save(model, tmp_path / "m.onnx"))
    rule = next(r for r in discover().rules if r.name == "maxunpool-as-scatter")
    reason = rule.apply(loaded, Finding("divergence", "", node="op", op="MaxUnpool"), RuleContext())
    assert reason is not None and "disagree" in reason


@pytest.mark.slow
def test_column_major_pool_indices_fail_plain_and_are_repaired(target, tmp_path):
    """One image, one channel, no pads: beyond that onnx2tf's own MaxPool indices are wrong (it
    flattens them channels-last): maxpool-indices-as-window-argmax, below."""
    model = _model(
        [helper.make_node("MaxPool", ["x"], ["v", "c"], name="pool", storage_order=1, kernel_shape=[2, 2])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 5, 4])],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [1, 1, 4, 3]),
            helper.make_tensor_value_info("c", TensorProto.INT64, [1, 1, 4, 3]),
        ],
    )
    path = save(model, tmp_path / "m.onnx")
    probe = {"x": np.random.default_rng(0).permutation(20).reshape(1, 1, 5, 4).astype(np.float32)}
    plain = target.convert(path, tmp_path / "plain", [probe], [{}], rtol=0, atol=0)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "maxpool-column-major-indices" in [s.rule for s in report.accepted_steps]
    fresh = {"x": np.random.default_rng(5).permutation(20).reshape(1, 1, 5, 4).astype(np.float32)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    rows, cols = np.divmod(outputs["c"], 5)[::-1]
    np.testing.assert_array_equal(fresh["x"][0, 0][rows, cols], outputs["v"])


@pytest.mark.slow
def test_an_unpool_fails_plain_and_is_repaired(target, tmp_path):
    model = _model(
        [helper.make_node("MaxUnpool", ["v", "i"], ["y"], name="op", **POOL)],
        [
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 3, 4, 3]),
            helper.make_tensor_value_info("i", TensorProto.INT64, [2, 3, 4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 7, 6])],
    )
    path = save(model, tmp_path / "m.onnx")

    pool = save(_pool_only(), tmp_path / "pool.onnx")

    def probe(seed: int) -> dict[str, np.ndarray]:
        """A pooled tensor and its indices, as MaxPool (run by onnxruntime) gives them."""
        return oracle.run_onnxruntime(str(pool), [_probe(seed)])[0]

    plain = target.convert(path, tmp_path / "plain", [probe(0)], [{}], rtol=0, atol=0)
    assert not plain.converted or plain.tf_outputs[0]["y"].shape != (2, 3, 7, 6)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe(0)])
    assert report.status == "repaired", report.to_json()
    assert "maxunpool-as-scatter" in [s.rule for s in report.accepted_steps]
    fresh = probe(5)
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    expected = np.zeros(2 * 3 * 7 * 6, np.float32)
    expected[fresh["i"].reshape(-1)] = fresh["v"].reshape(-1)
    np.testing.assert_array_equal(outputs["y"], expected.reshape(2, 3, 7, 6))


@pytest.mark.slow
@pytest.mark.parametrize("batch", [2, "n"])
def test_pool_indices_of_several_channels_are_wrong_plain_and_repaired(target, tmp_path, batch):
    """Three channels, two images, pads: the SavedModel's and the .tflite's indices are onnxruntime's;
    a dynamic batch's planes are counted at run time."""
    path = save(_pool_only(batch), tmp_path / "m.onnx")
    probes = [_probe(0), _probe(1)]
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=0, atol=0)
    assert not plain.verified

    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(path, options, backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "maxpool-indices-as-window-argmax" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
