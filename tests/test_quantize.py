"""`--quantize`: float16, dynamic-range and calibrated int8 .tflite files beside the float one, each
run on the probes and judged by what its mode is held to (convfix/quantized.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import dynamically_quantized_matmul, qdq_cnn, qoperator_cnn, save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, int8_source, model_io, oracle, qdq, quantized
from convfix.backends.base import OwnWeight
from convfix.backends.onnx2tf import own_weights
from convfix.errors import ConvfixError


def _classifier() -> onnx.ModelProto:
    """Conv, Relu, global pooling and a 10-way Gemm with 256 KiB of float weights."""
    rng = np.random.default_rng(0)
    weights = {
        "w": (rng.standard_normal((64, 3, 3, 3)) * 0.2).astype(np.float32),
        "b": rng.standard_normal(64).astype(np.float32) * 0.1,
        "w1": (rng.standard_normal((64, 1024)) * 0.1).astype(np.float32),
        "w2": (rng.standard_normal((1024, 10)) * 0.05).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["hr"]),
        helper.make_node("MatMul", ["hr", "w2"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def _calibration(path, count: int = 16):
    samples = np.random.default_rng(1).standard_normal((count, 1, 3, 16, 16)).astype(np.float32)
    np.savez(path, x=samples)
    return path


@pytest.fixture(scope="module")
def three_modes(target, tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize")
    path = save(_classifier(), folder / "m.onnx")
    options = RepairOptions(
        tf_out=folder / "tf",
        quantize="float16,dynamic,int8",
        calibration=_calibration(folder / "calibration.npz"),
    )
    return folder, convfix.repair(path, options, backend=target)


def test_each_mode_writes_its_tflite_beside_the_float_one(three_modes):
    folder, report = three_modes
    assert report.status == "clean", report.to_json()
    sizes = {mode: (folder / "tf" / f"model_{mode}.tflite").stat().st_size for mode in quantized.MODES}
    float_size = (folder / "tf" / "model.tflite").stat().st_size
    assert sizes["float16"] < 0.6 * float_size
    assert sizes["dynamic"] < 0.35 * float_size and sizes["int8"] < 0.35 * float_size
    for mode in quantized.MODES:
        artifact = report.tf.quantized[mode]
        assert artifact.path == str(folder / "tf" / f"model_{mode}.tflite") and not artifact.error


def test_float16_is_held_to_its_resolution_and_int8_is_measured(three_modes):
    _, report = three_modes
    half, full = report.tf.quantized["float16"], report.tf.quantized["int8"]
    assert half.ok and "range" in half.held_to
    assert full.ok and full.held_to.startswith("measured") and full.ops == "int8 builtins"
    assert full.scales_from.startswith("calibrated on 16 samples")
    figures = full.probes[0]
    assert figures.max_steps is not None and figures.cosine > 0.9 and figures.top1 is not None
    assert report.to_json()["tf"]["quantized"]["int8"]["probes"][0]["max_abs_err"] == figures.max_abs_err


def test_int8_io_takes_and_returns_int8_with_its_scales(target, tmp_path):
    path = save(_classifier(), tmp_path / "m.onnx")
    options = RepairOptions(
        tf_out=tmp_path / "tf",
        quantize="int8",
        calibration=_calibration(tmp_path / "calibration.npz", 8),
        quantized_io="int8",
        quantized_tolerance=1e-9,
    )
    report = convfix.repair(path, options, backend=target)
    artifact = report.tf.quantized["int8"]
    assert set(artifact.io_scales) == {"x", "logits"}
    assert not artifact.ok and report.status == "partial", "a tolerance no int8 model meets must fail it"
    assert "int8 TFLite" in report.reason


def test_calibration_must_name_every_input(tmp_path):
    np.savez(tmp_path / "c.npz", y=np.zeros((2, 1, 3, 16, 16), np.float32))
    like = {"x": np.zeros((1, 3, 16, 16), np.float32)}
    with pytest.raises(ConvfixError, match="the model's inputs are"):
        quantized.load_calibration(tmp_path / "c.npz", like)
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 3, 16, 16), np.float64))
    with pytest.raises(ConvfixError, match="float64 of rank 4"):
        quantized.load_calibration(tmp_path / "c.npz", like)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--quantize", "int8"], "int8 of a float model needs --calibration"),
        (["--quantize", "int4"], "not a mode"),
        (["--quantize", "float16", "--no-tf-out"], "--quantize writes"),
    ],
)
def test_bad_quantize_flags_are_one_line_and_exit_2(tmp_path, flags, message):
    path = save(_classifier(), tmp_path / "m.onnx")
    tf_out = [] if "--no-tf-out" in flags else ["--tf-out", str(tmp_path / "tf")]
    flags = [f for f in flags if f != "--no-tf-out"]
    done = subprocess.run(
        [sys.executable, "-m", "convfix", "repair", str(path), *tf_out, *flags],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "tf").exists()


def test_the_report_file_holds_each_mode(three_modes, tmp_path):
    _, report = three_modes
    report.write(tmp_path / "r.json")
    modes = json.loads((tmp_path / "r.json").read_text())["tf"]["quantized"]
    assert set(modes) == set(quantized.MODES)


def test_a_qdq_model_s_int8_file_keeps_its_own_scales_within_one_step(target, tmp_path):
    """No --calibration: the int8 file takes the model's QuantizeLinear scales (fake_quant.py) and
    must agree with onnxruntime on the QDQ model within one output step. Its float16 file rounds the
    model's scales and weights, so values next to a rounding boundary cross it: it is judged against
    the reference re-run on its own rounding, its ties at float16's resolution."""
    path = save(qdq_cnn(tmp_path), tmp_path / "m.onnx")
    options = RepairOptions(tf_out=tmp_path / "tf", quantize="float16,int8")
    report = convfix.repair(path, options, backend=target)
    half = report.tf.quantized["float16"]
    assert half.ok and half.rounding_ties > 0 and "re-run on its rounding" in half.held_to, half.to_json()
    artifact = report.tf.quantized["int8"]
    assert artifact.ok, artifact.to_json()
    own = len(qdq.own_scales(model_io.load(path)))
    kept = f"the model's own: {own} of its {own} QuantizeLinear scales in the file;"
    assert own >= 3 and artifact.scales_from.startswith(kept)
    assert max(p.max_steps for p in artifact.probes) <= 1.0 and artifact.ops == "int8 builtins"


def test_a_qoperator_model_converts_and_its_int8_file_keeps_its_own_scales(target, tmp_path):
    """onnxruntime's QOperator format: the float file from its QLinear ops spelled out with
    onnxruntime's integer arithmetic (QLinearConv over 288 taps summed in slices), the int8 file from
    the model rewritten in QDQ format (qoperator.py), keeping its scales and weights, no calibration."""
    path = save(qoperator_cnn(tmp_path), tmp_path / "m.onnx")
    ops = {node.domain + "::" + node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"com.microsoft::QGemm", "com.microsoft::QLinearGlobalAveragePool", "::QLinearConv"} <= ops
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, quantize="int8", backend=target)
    assert report.status == "repaired", report.reason
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    accepted = {step.rule for step in report.accepted_steps}
    assert {"contrib-qgemm", "contrib-qlinear-global-average-pool", "qlinear-conv-spelled-out"} <= accepted
    artifact = report.tf.quantized["int8"]
    assert artifact.ok and artifact.ops == "int8 builtins", artifact.to_json()
    kept = "the model's own: 7 of its 7 QuantizeLinear scales in the file; 3 of its 3 int8 weights"
    assert artifact.scales_from.startswith(kept)
    assert max(p.max_steps for p in artifact.probes) <= 1.0


def _shrunken_qdq() -> onnx.ModelProto:
    """A QDQ pair on a vanishing activation, as a QDQ model of random weights carries them deep in
    (seen: scales of 1e-8 in a MobileNet-style model): its scale lies below float16's normal range."""
    constants = {
        "k": np.array(3e-7, np.float32),
        "s": np.array(1e-8, np.float32),
        "z": np.array(0, np.int8),
    }
    nodes = [
        helper.make_node("Mul", ["x", "k"], ["m"]),
        helper.make_node("QuantizeLinear", ["m", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "shrunken",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_float16_file_that_cannot_hold_the_model_s_scales_fails_and_says_why(target, tmp_path):
    path = save(_shrunken_qdq(), tmp_path / "m.onnx")
    report = convfix.repair(path, tf_out=tmp_path / "tf", quantize="float16", backend=target)
    half = report.tf.quantized["float16"]
    assert report.tf.parity.ok and not half.ok, half.to_json()
    assert (
        half.cause and "1 of the model's 1 activation scales are below float16's normal range" in half.cause
    )
    assert report.status == "partial" and half.cause in report.reason


def _fake_quantized_conv() -> onnx.ModelProto:
    """PyTorch's eager fake-quant as its TorchScript export writes it: float weights through Q -> DQ,
    the Conv's output quantized before its Relu."""
    rng = np.random.default_rng(0)
    scalar = lambda value, dtype: np.array(value, dtype)  # noqa: E731
    constants = {
        "w": (rng.standard_normal((4, 3, 3, 3)) * 0.3).astype(np.float32),
        "xs": scalar(0.03, np.float32), "xz": scalar(128, np.uint8),
        "ws": scalar(0.01, np.float32), "wz": scalar(0, np.int8),
        "cs": scalar(0.02, np.float32), "cz": scalar(120, np.uint8),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("Identity", ["wz"], ["wz_shared"]),  # as TorchScript shares a zero point
        helper.make_node("QuantizeLinear", ["w", "ws", "wz_shared"], ["wq"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz_shared"], ["wd"]),
        helper.make_node("Conv", ["xd", "wd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "cs", "cz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
        helper.make_node("Relu", ["cd"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fake_quantized",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_the_own_scales_source_folds_weights_and_quantizes_after_the_relu(tmp_path):
    model = model_io.load(save(_fake_quantized_conv(), tmp_path / "m.onnx"))
    source = qdq.fake_quant_source(model)
    ops = [n.op_type for n in source.graph if n.op_type not in ("Constant", "Identity")]
    assert ops == ["QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "QuantizeLinear", "DequantizeLinear"]
    assert [s.name for s in qdq.own_scales(model)] == ["xq", "cq"]
    probe = {"x": np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32) * 2}
    before, after = (oracle.evaluate(m, [probe]).outputs[0]["y"] for m in (model, source))
    np.testing.assert_array_equal(before, after)


def _eager_fake_quant_classifier() -> onnx.ModelProto:
    """PyTorch's eager fake-quant as exported: weights on [-128, 127] with scale max|w| / 127.5 (so
    TFLite's own [-127, 127] grid differs), a float bias, and a mean the model leaves in float before
    its Linear (opset 18: its axes an input, from a Constant node)."""
    rng = np.random.default_rng(4)
    conv_w = (rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32)
    conv_w[0, 0, 0, 0] = -np.abs(conv_w).max() - 0.1  # its largest |weight| is negative: quantized to -128
    fc_w = (rng.standard_normal((5, 6)) * 0.5).astype(np.float32)
    scalar = lambda value, dtype: np.array(value, dtype)  # noqa: E731
    constants = {
        "cw": conv_w, "cws": scalar(np.abs(conv_w).max() / 127.5, np.float32), "z8": scalar(0, np.int8),
        "cb": (rng.standard_normal(6) * 0.1).astype(np.float32),
        "fw": fc_w, "fws": scalar(np.abs(fc_w).max() / 127.5, np.float32),
        "xs": scalar(0.03, np.float32), "xz": scalar(128, np.uint8),
        "cs": scalar(0.02, np.float32), "cz": scalar(120, np.uint8),
        "ys": scalar(0.01, np.float32), "yz": scalar(125, np.uint8),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("QuantizeLinear", ["cw", "cws", "z8"], ["cwq"]),
        helper.make_node("DequantizeLinear", ["cwq", "cws", "z8"], ["cwd"]),
        helper.make_node("Conv", ["xd", "cwd", "cb"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("QuantizeLinear", ["c", "cs", "cz"], ["cq"]),
        helper.make_node("DequantizeLinear", ["cq", "cs", "cz"], ["cd"]),
        helper.make_node("Relu", ["cd"], ["r"]),
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2, 3], np.int64))),
        helper.make_node("ReduceMean", ["r", "axes"], ["mean"], keepdims=0),
        helper.make_node("QuantizeLinear", ["fw", "fws", "z8"], ["fwq"]),
        helper.make_node("DequantizeLinear", ["fwq", "fws", "z8"], ["fwd"]),
        helper.make_node("Gemm", ["mean", "fwd"], ["g"], transB=1),
        helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "eager_fake_quant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_the_int8_reference_takes_a_float_mean_and_bias_on_their_int8_grids(tmp_path):
    model = model_io.load(save(_eager_fake_quant_classifier(), tmp_path / "m.onnx"))
    completed, changed = qdq.int8_reference(model)
    assert changed == ["bias of Conv conv in int32", "ReduceMean mean on its input's grid"]
    bias = ir.convenience.get_const_tensor(next(n for n in completed.graph if n.op_type == "Conv").inputs[2])
    step = 0.03 * qdq.own_weights(model)[0].scales[0]
    np.testing.assert_allclose(bias.numpy() / step, np.rint(bias.numpy() / step), atol=1e-3)
    pair = next(n for n in completed.graph if n.op_type == "QuantizeLinear" and n.inputs[0].name == "mean")
    assert [v.name for v in pair.inputs[1:]] == ["cs", "cz"]
    weights = qdq.own_weights(model)
    assert [w.name for w in weights] == ["cwq", "fwq"] and weights[0].integers.min() == -128


def test_own_weights_are_found_in_the_converter_s_layout_and_grid():
    """A [6, 3, 3, 3] conv weight as TFLite stores it, [6, 3, 3, 3] OHWI re-rounded per channel on
    max|w| / 127: found, and the model's integers and scale put back in that layout."""
    rng = np.random.default_rng(5)
    integers = rng.integers(-128, 128, (6, 3, 3, 3)).astype(np.int8)
    weight = OwnWeight("w", integers, np.array([0.01], np.float32), 0)
    floats = integers.astype(np.float64).transpose(0, 2, 3, 1) * 0.01
    file_scales = np.abs(floats).reshape(6, -1).max(1) / 127
    in_file = np.rint(floats / file_scales.reshape(-1, 1, 1, 1)).astype(np.int8)
    found = own_weights._matched(in_file, file_scales, 0, weight)
    assert found is not None
    np.testing.assert_array_equal(found[0], integers.transpose(0, 2, 3, 1))
    np.testing.assert_allclose(found[1], np.full(6, 0.01))
    assert own_weights._matched(in_file, file_scales, 0, OwnWeight("v", -integers, weight.scales, 0)) is None


def test_an_eager_fake_quant_classifier_s_int8_file_keeps_its_weights(target, tmp_path):
    path = save(_eager_fake_quant_classifier(), tmp_path / "m.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", quantize="int8"), backend=target)
    artifact = report.tf.quantized["int8"]
    assert artifact.ok and "2 of its 2 int8 weights as the model stores them" in artifact.scales_from, (
        artifact.to_json()
    )
    assert "(bias of Conv conv in int32; ReduceMean mean on its input's grid)" in artifact.held_to
    assert artifact.ops == "int8 builtins"  # the Mean's axes int32 (int8_source.py), not a select TF op


def _pooled_stem() -> onnx.ModelProto:
    """A ResNet stem: Conv, Relu, then MaxPool 3x3 / 2 with pads TF cannot express."""
    rng = np.random.default_rng(6)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p", "w2"], ["y"], pads=[1, 1, 1, 1]),
    ]
    weights = {"w1": rng.standard_normal((8, 3, 3, 3)), "w2": rng.standard_normal((4, 8, 3, 3)) * 0.3}
    graph = helper.make_graph(
        nodes,
        "stem",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_padded_max_pool_is_zero_padded_for_the_int8_file(target, tmp_path):
    """onnx2tf pads it with float32's lowest value, which calibration took into the range: the int8
    file had a scale of 1e36 and could not be run."""
    path = save(_pooled_stem(), tmp_path / "m.onnx")
    samples = np.random.default_rng(0).standard_normal((8, 1, 3, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "cal.npz", x=samples)
    options = RepairOptions(tf_out=tmp_path / "tf", quantize="int8", calibration=tmp_path / "cal.npz")
    probes = [{"x": s} for s in samples[:3]]
    artifact = convfix.repair(path, options, backend=target, probe_set=probes).tf.quantized["int8"]
    assert artifact.error is None and "1 padded MaxPool(s) over a Relu zero-padded" in artifact.scales_from
    assert min(p.cosine for p in artifact.probes) > 0.999, artifact.to_json()


def _qdq_mean_classifier() -> onnx.ModelProto:
    """onnxruntime's QDQ layout of a CNN head: a quantized ReduceMean whose axes (opset 18) come
    from a Constant node."""
    rng = np.random.default_rng(7)
    scalar = lambda value, dtype: np.array(value, dtype)  # noqa: E731
    constants = {
        "cw": rng.integers(-127, 128, (6, 3, 3, 3)).astype(np.int8), "cws": scalar(0.004, np.float32),
        "fw": rng.integers(-127, 128, (5, 6)).astype(np.int8), "fws": scalar(0.01, np.float32),
        "z8": scalar(0, np.int8), "xs": scalar(0.03, np.float32), "xz": scalar(128, np.uint8),
        "cs": scalar(0.02, np.float32), "cz": scalar(0, np.uint8),
        "ms": scalar(0.01, np.float32), "mz": scalar(0, np.uint8),
        "ys": scalar(0.005, np.float32), "yz": scalar(125, np.uint8),
    }  # fmt: skip
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["cw", "cws", "z8"], ["cwd"]),
        helper.make_node("Conv", ["xd", "cwd"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "cs", "cz"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "cs", "cz"], ["rd"]),
        helper.make_node("Constant", [], ["axes"], value=numpy_helper.from_array(np.array([2, 3], np.int64))),
        helper.make_node("ReduceMean", ["rd", "axes"], ["mean"], keepdims=0),
        helper.make_node("QuantizeLinear", ["mean", "ms", "mz"], ["mq"]),
        helper.make_node("DequantizeLinear", ["mq", "ms", "mz"], ["md"]),
        helper.make_node("DequantizeLinear", ["fw", "fws", "z8"], ["fwd"]),
        helper.make_node("Gemm", ["md", "fwd"], ["g"], transB=1),
        helper.make_node("QuantizeLinear", ["g", "ys", "yz"], ["gq"]),
        helper.make_node("DequantizeLinear", ["gq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq_mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


def test_the_int8_source_holds_its_constants_as_initializers(tmp_path):
    """onnx2tf takes a Constant node's output as a TF tensor: a ReduceMean's axes stayed int64 where
    its input kept the ONNX layout (an onnxruntime QDQ ResNet), which TFLite's int8 Mean refuses, and
    the Mean fell back to a select TF op (benchmarks/results/quantization.md). In the int8 source
    they are initializers, which onnx2tf reads as numbers."""
    model = model_io.load(save(_qdq_mean_classifier(), tmp_path / "m.onnx"))
    prepared, changed = int8_source.prepared(model)
    assert changed == ["Constant nodes as initializers"]
    assert not [n for n in prepared.graph if n.op_type == "Constant"]
    assert "axes" in prepared.graph.initializers
    assert not [n for n in qdq.fake_quant_source(model).graph if n.op_type == "Constant"]


def test_a_dynamically_quantized_model_s_dynamic_file_is_builtin_with_its_own_weights(target, tmp_path):
    """Made from the model with its MatMul as x @ DequantizeLinear(W) (dequantized.py): as spelled
    out for the float file, its int32 products needed select TF ops."""
    path = save(dynamically_quantized_matmul(64, 48, 8), tmp_path / "m.onnx")
    options = RepairOptions(tf_out=tmp_path / "tf", quantize="dynamic")
    artifact = convfix.repair(path, options, backend=target).tf.quantized["dynamic"]
    assert artifact.ops == "builtins", artifact.to_json()
    assert "1 dynamically quantized MatMul(s) as float MatMuls of their int8 weights" in artifact.scales_from
    assert "1 of its 1 int8 weights as the model stores them" in artifact.scales_from
    assert min(p.cosine for p in artifact.probes) > 0.999


_STRIP_SIGNATURES = """
import sys
from tensorflow.lite.tools import flatbuffer_utils
model = flatbuffer_utils.read_model(sys.argv[1])
model.signatureDefs = []
flatbuffer_utils.write_model(model, sys.argv[2])
"""


def test_a_tflite_without_signatures_runs_by_its_tensor_names(target, tmp_path):
    """onnx2tf's dynamic-range file has no signature: the benchmark runs it beside convfix's."""
    path = save(qdq_cnn(tmp_path), tmp_path / "m.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    plain = tmp_path / "plain.tflite"
    subprocess.run(
        [sys.executable, "-c", _STRIP_SIGNATURES, str(tmp_path / "tf" / "model.tflite"), str(plain)],
        check=True,
    )
    probe = {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    (signed,) = target.run(tmp_path / "tf" / "model.tflite", [probe])
    (unsigned,) = target.run(plain, [probe])
    assert report.tf.verified and len(unsigned) == len(signed) == 1
    np.testing.assert_array_equal(next(iter(unsigned.values())), next(iter(signed.values())))
