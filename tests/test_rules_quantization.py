"""quantize-linear-, qlinear-matmul-, qlinear-conv-spelled-out: onnx2tf returns dequantized floats."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import dynamically_quantized_matmul, outputs_before_and_after, qdq_cnn, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, oracle
from convfix.rules import discover

RULES = {r.name: r for r in discover().rules}


def _quantize_model(scale: np.ndarray, point: np.ndarray, axis: int = 1) -> onnx.ModelProto:
    node = helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["y"], name="op", axis=axis)
    elem = helper.np_dtype_to_tensor_dtype(point.dtype)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", elem, [2, 3, 4])],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(point, "zp")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)


def _qlinear_matmul_model() -> onnx.ModelProto:
    names = ["a", "a_scale", "a_zp", "b", "b_scale", "b_zp", "y_scale", "y_zp"]
    node = helper.make_node("QLinearMatMul", names, ["y"], name="op")
    constants = [
        numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"),
        numpy_helper.from_array(np.array(113, np.uint8), "a_zp"),
        numpy_helper.from_array(np.array(0.04, np.float32), "b_scale"),
        numpy_helper.from_array(np.array(114, np.uint8), "b_zp"),
        numpy_helper.from_array(np.array(0.3, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(118, np.uint8), "y_zp"),
    ]
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.UINT8, [2, 4]),
            helper.make_tensor_value_info("b", TensorProto.UINT8, [4, 3]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 3])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _qlinear_conv_model(opset: int, per_channel: bool, group: int = 2) -> onnx.ModelProto:
    """A strided, padded (grouped) uint8 QLinearConv with an int32 bias, as a quantizer writes one."""
    names = ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp", "y_scale", "y_zp", "bias"]
    attributes = {"pads": [1, 0, 1, 2], "strides": [2, 1], "group": group, "kernel_shape": [3, 3]}
    node = helper.make_node("QLinearConv", names, ["y"], name="op", **attributes)
    rng = np.random.default_rng(7)
    w_scale = np.array([0.02, 0.03, 0.025, 0.04] if per_channel else [0.03], np.float32)
    constants = [
        numpy_helper.from_array(np.array(0.05, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(120, np.uint8), "x_zp"),
        numpy_helper.from_array(rng.integers(0, 256, (4, 6 // group, 3, 3)).astype(np.uint8), "w"),
        numpy_helper.from_array(w_scale, "w_scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "w_zp"),
        numpy_helper.from_array(np.array(2.5, np.float32), "y_scale"),
        numpy_helper.from_array(np.array(100, np.uint8), "y_zp"),
        numpy_helper.from_array(rng.integers(-2000, 2000, 4).astype(np.int32), "bias"),
    ]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [2, 6, 7, 5])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [2, 4, 4, 5])],
        constants,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=7)


def _conv_probes(count: int) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    return [{"x": rng.integers(0, 256, (2, 6, 7, 5)).astype(np.uint8)} for _ in range(count)]


@pytest.mark.parametrize(("opset", "per_channel"), [(10, True), (13, False), (19, True)])
def test_qlinear_conv_is_a_centered_conv_requantized(tmp_path, opset, per_channel):
    model = _qlinear_conv_model(opset, per_channel)
    _same_after(tmp_path, model, "qlinear-conv-spelled-out", "QLinearConv", _conv_probes(3))


def _same_after(tmp_path, model: onnx.ModelProto, rule: str, op: str, probes: list[dict]) -> None:
    expected, actual = outputs_before_and_after(tmp_path, model, rule, op, probes)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


@pytest.mark.parametrize(
    ("scale", "point"),
    [
        (np.array(0.1, np.float32), np.array(128, np.uint8)),
        (np.array([0.05, 0.1, 0.5], np.float32), np.array([0, -5, 7], np.int8)),
    ],
    ids=["per-tensor uint8", "per-axis int8"],
)
def test_quantize_linear_gives_onnxruntime_integers_ties_and_saturation_included(tmp_path, scale, point):
    x = np.linspace(-40, 40, 24, dtype=np.float32).reshape(2, 3, 4)
    ties = np.full((2, 3, 4), 0.25, np.float32)  # 0.25 / 0.1 and / 0.5: halves, rounded to even
    _same_after(
        tmp_path,
        _quantize_model(scale, point),
        "quantize-linear-spelled-out",
        "QuantizeLinear",
        [{"x": x}, {"x": ties}],
    )


def test_qlinear_matmul_is_an_integer_product_requantized(tmp_path):
    rng = np.random.default_rng(0)
    probes = [
        {
            "a": rng.integers(0, 256, (2, 4)).astype(np.uint8),
            "b": rng.integers(0, 256, (4, 3)).astype(np.uint8),
        }
        for _ in range(3)
    ]
    _same_after(tmp_path, _qlinear_matmul_model(), "qlinear-matmul-spelled-out", "QLinearMatMul", probes)


@pytest.mark.slow
def test_a_quantized_output_is_wrong_plain_and_repaired(target, tmp_path):
    path = save(_quantize_model(np.array(0.1, np.float32), np.array(128, np.uint8)), tmp_path / "q.onnx")
    x = np.linspace(-10, 10, 24, dtype=np.float32).reshape(2, 3, 4)
    (expected,) = oracle.evaluate(model_io.load(path), [{"x": x}]).outputs
    plain = target.convert(path, tmp_path / "plain", [{"x": x}], [expected], rtol=0, atol=0)
    assert not plain.converted or (plain.tf_outputs[0]["y"] != expected["y"]).any()

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[{"x": x}])
    assert report.status == "repaired", report.to_json()
    assert "quantize-linear-spelled-out" in [s.rule for s in report.accepted_steps]
    fresh = {"x": np.linspace(-13, 7, 24, dtype=np.float32).reshape(2, 3, 4)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    want = np.clip(np.rint(fresh["x"] / np.float32(0.1)) + 128, 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(outputs["y"], want)


def test_dequantize_linear_per_channel_is_the_graph_s_arithmetic(tmp_path):
    node = helper.make_node("DequantizeLinear", ["x", "s", "zp"], ["y"], name="op", axis=0)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [3, 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 4])],
        [
            numpy_helper.from_array(np.array([0.1, 0.25, 0.02], np.float32), "s"),
            numpy_helper.from_array(np.array([0, -3, 5], np.int8), "zp"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    x = np.random.default_rng(1).integers(-128, 128, size=(3, 2, 4)).astype(np.int8)
    _same_after(tmp_path, model, "dequantize-linear-spelled-out", "DequantizeLinear", [{"x": x}])


@pytest.mark.slow
def test_qlinear_matmul_gives_onnxruntime_integers_once_spelled_out(target, tmp_path):
    path = save(_qlinear_matmul_model(), tmp_path / "qmm.onnx")
    rng = np.random.default_rng(4)
    probes = [
        {
            "a": rng.integers(0, 256, (2, 4)).astype(np.uint8),
            "b": rng.integers(0, 256, (4, 3)).astype(np.uint8),
        }
        for _ in range(2)
    ]
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=0, atol=0)
    assert not plain.converted or any(
        (got["y"] != want["y"]).any() for got, want in zip(plain.tf_outputs, expected, strict=True)
    )

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "qlinear-matmul-spelled-out" in [s.rule for s in report.accepted_steps]
    (outputs,) = target.run(tmp_path / "tf", probes[:1])
    np.testing.assert_array_equal(outputs["y"], expected[0]["y"])


@pytest.mark.slow
def test_a_qlinear_conv_fails_plain_and_is_repaired(target, tmp_path):
    path = save(_qlinear_conv_model(10, per_channel=True), tmp_path / "qconv.onnx")
    probes = _conv_probes(2)
    plain = target.convert(path, tmp_path / "plain", probes[:1], [{}], rtol=0, atol=0)
    assert not plain.converted

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes[:1])
    assert report.status == "repaired", report.to_json()
    assert "qlinear-conv-spelled-out" in [s.rule for s in report.accepted_steps]
    (expected,) = oracle.evaluate(model_io.load(path), probes[1:]).outputs
    (outputs,) = target.run(tmp_path / "tf", probes[1:])
    np.testing.assert_array_equal(outputs["y"], expected["y"])


def _blocked_model() -> onnx.ModelProto:
    """QuantizeLinear then DequantizeLinear per block of 3 along the last axis (opset 21), the scale and
    zero point one per block: x [2, 3, 8] has 3 blocks per row, the last one short."""
    rng = np.random.default_rng(5)
    scale = (rng.random((2, 3, 3)) * 0.2 + 0.05).astype(np.float32)
    point = rng.integers(-20, 20, (2, 3, 3)).astype(np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["q"], name="op", axis=-1, block_size=3),
        helper.make_node("DequantizeLinear", ["q", "s", "zp"], ["y"], name="back", axis=2, block_size=3),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8])],
        [
            helper.make_tensor_value_info("q", TensorProto.INT8, [2, 3, 8]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 8]),
        ],
        [numpy_helper.from_array(scale, "s"), numpy_helper.from_array(point, "zp")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def _blocked_probe(seed: int) -> dict[str, np.ndarray]:
    return {"x": (np.random.default_rng(seed).standard_normal((2, 3, 8)) * 8).astype(np.float32)}


def test_blocked_quantization_uses_each_block_s_scale(tmp_path):
    model = _blocked_model()
    _same_after(tmp_path, model, "quantize-linear-spelled-out", "QuantizeLinear", [_blocked_probe(0)])
    expected, actual = outputs_before_and_after(
        tmp_path, model, "dequantize-linear-spelled-out", "DequantizeLinear", [_blocked_probe(1)], node="back"
    )
    np.testing.assert_array_equal(actual[0]["y"], expected[0]["y"])


@pytest.mark.slow
def test_blocked_quantization_converts_with_parity(target, tmp_path):
    path = save(_blocked_model(), tmp_path / "blocked.onnx")
    report = convfix.repair(
        path,
        RepairOptions(tf_out=tmp_path / "tf", tflite=True),
        backend=target,
        probe_set=[_blocked_probe(2)],
    )
    assert report.status == "repaired", report.to_json()
    assert "quantize-linear-spelled-out" in [s.rule for s in report.accepted_steps]  # onnx2tf's blocked
    # QuantizeLinear is wrong (the node suite's two blocked cases too); its blocked DequantizeLinear holds
    (expected,) = oracle.evaluate(model_io.load(path), [_blocked_probe(3)]).outputs
    (outputs,) = target.run(tmp_path / "tf", [_blocked_probe(3)])
    np.testing.assert_array_equal(outputs["q"], expected["q"])
    np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-6, atol=1e-6)


def test_a_qdq_cnn_is_repaired_in_one_conversion(target, tmp_path):
    """Every QuantizeLinear and per-channel weight is predicted (known_divergences.py), so all are
    spelled out before the first conversion instead of one per conversion by the localizer."""
    path = save(qdq_cnn(tmp_path), tmp_path / "m.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert not [n for n in report.notes if n.startswith("divergence localized")], report.notes
    rules = {s.rule for s in report.accepted_steps}
    assert "quantize-linear-spelled-out" in rules


def test_a_dynamically_quantized_matmul_is_wrong_plain_and_repaired(target, tmp_path):
    path = save(dynamically_quantized_matmul(8, 6, 3), tmp_path / "d.onnx")
    probes = [{"x": np.random.default_rng(i).standard_normal((2, 5, 8)).astype(np.float32)} for i in range(3)]
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=1e-4, atol=1e-4)
    assert plain.converted and not plain.verified

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "dynamic-quantize-linear-spelled-out" in [s.rule for s in report.accepted_steps]
    assert not [n for n in report.notes if n.startswith("divergence localized")], report.notes
