"""pool-explicit-pads, dilated-average-pool-as-conv, strided-dilated-max-pool: pools onnx2tf gets wrong."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules}
PADS, AVERAGE, MAX = (
    RULES[name] for name in ("pool-explicit-pads", "dilated-average-pool-as-conv", "strided-dilated-max-pool")
)


def _model(op_type: str, shape, **attributes) -> onnx.ModelProto:
    """y = op(x), y's shape inferred."""
    node = helper.make_node(op_type, ["x"], ["y"], name="pool", **attributes)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)], ir_version=9)
    return onnx.shape_inference.infer_shapes(model)


def _probe(shape, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=shape).astype(np.float32)}


def _rewritten_against_onnxruntime(tmp_path, rule, original: onnx.ModelProto, shape, rtol: float) -> None:
    """The rule applies, and the rewritten model computes what onnxruntime computes on the original."""
    path = save(original, tmp_path / "m.onnx")
    model = normalize.normalize(model_io.load(path))
    op_type = original.graph.node[0].op_type
    assert rule.apply(model, Finding("divergence", "", node="pool", op=op_type), RuleContext()) is None
    probes = [_probe(shape, seed) for seed in range(2)]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        (expected,) = session.run(None, probe)
        assert outputs["y"].shape == expected.shape
        np.testing.assert_allclose(outputs["y"], expected, rtol=rtol, atol=1e-6)


@pytest.mark.parametrize(
    ("op_type", "auto_pad", "shape", "attributes"),
    [
        ("AveragePool", "SAME_LOWER", (1, 3, 7, 8), {"kernel_shape": [2, 3]}),
        ("AveragePool", "SAME_UPPER", (1, 2, 9, 9), {"kernel_shape": [4, 4], "strides": [2, 2]}),
        ("MaxPool", "SAME_LOWER", (2, 3, 7, 6), {"kernel_shape": [2, 2], "strides": [2, 1]}),
        ("LpPool", "SAME_LOWER", (1, 3, 8, 8), {"kernel_shape": [2, 2], "p": 2}),
        ("LpPool", "SAME_UPPER", (1, 3, 7, 9), {"kernel_shape": [3, 2], "strides": [2, 2], "p": 3}),
    ],
)
def test_same_padding_becomes_the_explicit_pads_it_means(tmp_path, op_type, auto_pad, shape, attributes):
    original = _model(op_type, shape, auto_pad=auto_pad, **attributes)
    _rewritten_against_onnxruntime(tmp_path, PADS, original, shape, rtol=1e-6)


def test_lppool_pads_move_to_a_pad_of_zeros(tmp_path):
    original = _model("LpPool", (1, 2, 6, 6), kernel_shape=[3, 3], pads=[1, 1, 1, 1], p=2)
    _rewritten_against_onnxruntime(tmp_path, PADS, original, (1, 2, 6, 6), rtol=1e-6)


@pytest.mark.parametrize(
    ("shape", "attributes"),
    [
        ((1, 3, 8, 9), {"kernel_shape": [2, 3], "dilations": [2, 2]}),
        (
            (1, 2, 9, 9),
            {"kernel_shape": [3, 3], "dilations": [2, 3], "pads": [1, 2, 2, 1], "strides": [2, 2]},
        ),
        (
            (2, 2, 9, 8),
            {"kernel_shape": [3, 2], "dilations": [2, 2], "pads": [1, 1, 1, 1], "count_include_pad": 1},
        ),
        ((1, 1, 10, 10), {"kernel_shape": [3, 3], "dilations": [2, 2], "strides": [3, 3], "ceil_mode": 1}),
        (
            (1, 2, 10, 10),
            {
                "kernel_shape": [3, 3],
                "dilations": [2, 2],
                "strides": [3, 3],
                "ceil_mode": 1,
                "pads": [1, 1, 1, 1],
            },
        ),
        (
            (1, 1, 9, 10, 8),
            {"kernel_shape": [3, 3, 2], "dilations": [2, 2, 3], "strides": [2, 3, 2], "count_include_pad": 1},
        ),
    ],
)
def test_a_dilated_average_is_a_conv_of_ones_over_the_count(tmp_path, shape, attributes):
    _rewritten_against_onnxruntime(tmp_path, AVERAGE, _model("AveragePool", shape, **attributes), shape, 1e-5)


@pytest.mark.parametrize(
    "attributes",
    [
        {"kernel_shape": [3, 3, 3], "dilations": [2, 2, 2], "strides": [2, 2, 2]},
        {"kernel_shape": [3, 2, 3], "dilations": [2, 3, 1], "strides": [3, 2, 2], "ceil_mode": 1},
        {"kernel_shape": [2, 3, 3], "dilations": [2, 2, 2], "strides": [2, 3, 2], "pads": [1, 0, 1, 0, 2, 1]},
    ],
)
def test_a_strided_dilated_max_is_every_stride_th_window(tmp_path, attributes):
    shape = (1, 2, 9, 10, 11)
    _rewritten_against_onnxruntime(tmp_path, MAX, _model("MaxPool", shape, **attributes), shape, rtol=0)


@pytest.mark.parametrize(
    ("rule", "op_type", "shape", "attributes", "reason"),
    [
        (AVERAGE, "AveragePool", (1, 2, 6, 6), {"kernel_shape": [2, 2]}, "no dilation"),
        (AVERAGE, "AveragePool", (1, 2, "h", 6), {"kernel_shape": [2, 2], "dilations": [2, 2]}, "not static"),
        (MAX, "MaxPool", (1, 2, 6, 6, 6), {"kernel_shape": [2, 2, 2], "dilations": [2, 2, 2]}, "no stride"),
        (PADS, "MaxPool", (1, 2, 6, 6), {"kernel_shape": [2, 2], "pads": [1, 1, 1, 1]}, "no SAME"),
    ],
)
def test_what_the_rules_refuse(tmp_path, rule, op_type, shape, attributes, reason):
    model = normalize.normalize(
        model_io.load(save(_model(op_type, shape, **attributes), tmp_path / "m.onnx"))
    )
    refusal = rule.apply(model, Finding("divergence", "", node="pool", op=op_type), RuleContext())
    assert refusal is not None and reason in refusal
    assert [n.op_type for n in model.graph] == [op_type]


def _repaired(target, tmp_path, original: onnx.ModelProto, shape, rule: str) -> None:
    """convfix repairs it with `rule`, and the TF model matches onnxruntime on a fresh probe."""
    path = save(original, tmp_path / "pool.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert rule in [s.rule for s in report.accepted_steps]
    probe = _probe(shape, seed=7)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, probe)
    np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5, atol=1e-5)


def _plain(target, tmp_path, original: onnx.ModelProto, shape):
    path = save(original, tmp_path / "plain.onnx")
    probe = _probe(shape)
    (expected,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, probe)
    return target.convert(path, tmp_path / "plain", [probe], [{"y": expected}], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_same_lower_gets_the_right_shape_once_explicit(target, tmp_path):
    shape = (1, 3, 8, 8)
    original = _model("MaxPool", shape, auto_pad="SAME_LOWER", kernel_shape=[2, 2])
    plain = _plain(target, tmp_path, original, shape)
    assert plain.converted and plain.layout_problems, "plain onnx2tf should convert it, wrongly"
    assert "!= expected (1, 3, 8, 8)" in " ".join(plain.layout_problems)
    _repaired(target, tmp_path, original, shape, "pool-explicit-pads")


@pytest.mark.slow
def test_a_dilated_average_gets_the_right_shape_once_a_conv(target, tmp_path):
    shape = (1, 2, 9, 9)
    original = _model(
        "AveragePool", shape, kernel_shape=[3, 3], dilations=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1]
    )
    plain = _plain(target, tmp_path, original, shape)
    assert not plain.converted or plain.layout_problems, "plain onnx2tf should get it wrong"
    _repaired(target, tmp_path, original, shape, "dilated-average-pool-as-conv")


@pytest.mark.slow
def test_a_strided_dilated_3d_max_converts_once_sliced(target, tmp_path):
    shape = (1, 2, 9, 10, 11)
    original = _model(
        "MaxPool", shape, kernel_shape=[3, 3, 3], dilations=[2, 2, 2], strides=[2, 2, 2], ceil_mode=1
    )
    plain = _plain(target, tmp_path, original, shape)
    assert not plain.converted
    assert "Dilated MaxPool with strides is not supported" in plain.error
    _repaired(target, tmp_path, original, shape, "strided-dilated-max-pool")


@pytest.mark.parametrize(
    "attributes",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2]},  # SqueezeNet's
        {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 0], "dilations": [1, 2]},
    ],
)
def test_a_ceil_mode_max_pool_over_dynamic_dims_pads_its_end_instead(tmp_path, target, attributes):
    original = _model("MaxPool", ("batch", 3, "height", "width"), ceil_mode=1, **attributes)
    for shape in ((1, 3, 9, 8), (2, 3, 12, 13)):  # a remainder and none, along each axis
        _rewritten_against_onnxruntime(tmp_path, RULES["ceil-mode-as-end-padding"], original, shape, 0.0)
    path = save(original, tmp_path / "dynamic.onnx")
    probes = [_probe(shape, seed) for seed, shape in enumerate(((1, 3, 9, 8), (2, 3, 12, 13)))]
    report = convfix.repair(path, tf_out=tmp_path / "tf", tflite=True, probe_set=probes, backend=target)
    assert "ceil-mode-as-end-padding" in {s.rule for s in report.accepted_steps}
    assert report.status == "repaired" and report.tf.parity.ok and report.tf.tflite_parity.ok


def test_a_ceil_mode_window_that_could_start_in_the_end_padding_is_refused():
    model = ir.serde.deserialize_model(
        _model("MaxPool", (1, 3, 8, 8), ceil_mode=1, kernel_shape=[2, 2], strides=[3, 3])
    )
    finding = Finding("conversion-error", "", node="pool", op="MaxPool")
    reason = RULES["ceil-mode-as-end-padding"].apply(model, finding, RuleContext())
    assert reason == "a ceil-mode window could start in the end padding (ONNX drops it)"
