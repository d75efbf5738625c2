"""instance-norm-decomposed, batch-norm-training-decomposed: normalizations onnx2tf fails on; lrn-decomposed:
an LRN it converts 2e-4 off."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import outputs_before_and_after, save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "instance-norm-decomposed")


def _model(shape=(2, 3, 4, 5), opset: int = 17, epsilon: float = 1e-2) -> onnx.ModelProto:
    node = helper.make_node("InstanceNormalization", ["x", "s", "b"], ["y"], name="norm", epsilon=epsilon)
    channels = [shape[1]]
    inputs = [
        helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape)),
        helper.make_tensor_value_info("s", TensorProto.FLOAT, channels),
        helper.make_tensor_value_info("b", TensorProto.FLOAT, channels),
    ]
    graph = helper.make_graph(
        [node], "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))]
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _probe(shape, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale, bias = rng.normal(size=(2, shape[1])).astype(np.float32)
    return {"x": (rng.normal(size=shape) * 3 + 1).astype(np.float32), "s": scale, "b": bias}


def _onnxruntime(path, probe: dict[str, np.ndarray]) -> np.ndarray:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, probe)[0]


@pytest.mark.parametrize(("shape", "opset"), [((2, 3, 4, 5), 17), ((1, 4, 6), 18), ((2, 2, 3, 4, 3), 22)])
def test_the_decomposition_normalizes_like_onnxruntime(tmp_path, shape, opset):
    path = save(_model(shape, opset), tmp_path / "m.onnx")
    model = normalize.normalize(model_io.load(path))
    finding = Finding("conversion-error", "", node="norm", op="InstanceNormalization")
    assert RULE.apply(model, finding, RuleContext()) is None
    assert "InstanceNormalization" not in {n.op_type for n in model.graph}
    probes = [_probe(shape, seed) for seed in range(2)]
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_allclose(outputs["y"], _onnxruntime(path, probe), rtol=1e-5, atol=1e-5)


def test_an_unknown_rank_is_refused(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(), tmp_path / "m.onnx")))
    model.graph.node(0).inputs[0].shape = None
    reason = RULE.apply(
        model, Finding("divergence", "", node="norm", op="InstanceNormalization"), RuleContext()
    )
    assert reason is not None and "rank" in reason


@pytest.mark.slow
def test_scale_and_bias_inputs_convert_once_decomposed(target, tmp_path):
    path = save(_model(), tmp_path / "norm.onnx")
    probe = _probe((2, 3, 4, 5))
    plain = target.convert(
        path, tmp_path / "plain", [probe], [{"y": _onnxruntime(path, probe)}], rtol=1e-4, atol=1e-4
    )
    assert not plain.converted
    assert "Variable" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "instance-norm-decomposed" in [s.rule for s in report.accepted_steps]
    fresh = _probe((2, 3, 4, 5), seed=7)
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], _onnxruntime(path, fresh), rtol=1e-4, atol=1e-4)


def _training_model() -> onnx.ModelProto:
    """BatchNormalization in training mode: Y, and the running mean and variance updated."""
    node = helper.make_node(
        "BatchNormalization",
        ["x", "s", "b", "m", "v"],
        ["y", "rm", "rv"],
        name="bn",
        training_mode=1,
        momentum=0.8,
    )
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 5]),
            *(helper.make_tensor_value_info(n, TensorProto.FLOAT, [3]) for n in ("s", "b", "m", "v")),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 5]),
            helper.make_tensor_value_info("rm", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("rv", TensorProto.FLOAT, [3]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)], ir_version=8)


def _training_probe(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = {n: rng.uniform(0.5, 1.5, size=3).astype(np.float32) for n in ("s", "b", "m", "v")}
    return {"x": rng.normal(size=(2, 3, 4, 5)).astype(np.float32), **vectors}


def test_training_batch_norm_gives_every_output_onnxruntime_gives(tmp_path):
    rule = next(r for r in discover().rules if r.name == "batch-norm-training-decomposed")
    model = normalize.normalize(model_io.load(save(_training_model(), tmp_path / "bn.onnx")))
    probes = [_training_probe(s) for s in range(2)]
    expected = oracle.evaluate(model, probes).outputs
    assert (
        rule.apply(model, Finding("conversion-error", "", node="bn", op="BatchNormalization"), RuleContext())
        is None
    )
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        for name in ("y", "rm", "rv"):
            np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_training_batch_norm_converts_all_three_outputs_once_decomposed(target, tmp_path):
    path = save(_training_model(), tmp_path / "bn.onnx")
    plain = target.convert(path, tmp_path / "plain", [_training_probe(0)], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and plain.error_nodes == ("bn",)

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "batch-norm-training-decomposed" in [s.rule for s in report.accepted_steps]
    fresh = _training_probe(5)
    (expected,) = oracle.evaluate(model_io.load(path), [fresh]).outputs
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    for name in ("y", "rm", "rv"):
        np.testing.assert_allclose(outputs[name], expected[name], rtol=1e-4, atol=1e-5)


LRN = next(r for r in discover().rules if r.name == "lrn-decomposed")


def _lrn_model(shape, opset: int, **attributes) -> onnx.ModelProto:
    node = helper.make_node("LRN", ["x"], ["y"], name="op", **attributes)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(shape))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


@pytest.mark.parametrize(
    ("shape", "opset", "attributes"),
    [
        ((5, 5, 5, 5), 13, {"size": 3}),
        ((2, 7, 4, 3), 9, {"size": 5, "alpha": 2e-2, "beta": 0.5, "bias": 2.0}),
        ((1, 3, 4, 4), 13, {"size": 7, "alpha": 0.3}),
    ],
)
def test_the_lrn_decomposition_normalizes_like_onnxruntime(tmp_path, shape, opset, attributes):
    rng = np.random.default_rng(0)
    probes = [{"x": (rng.normal(size=shape) * 3).astype(np.float32)} for _ in range(2)]
    model = _lrn_model(shape, opset, **attributes)
    expected, actual = outputs_before_and_after(tmp_path, model, "lrn-decomposed", "LRN", probes)
    for want, got in zip(expected, actual, strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-6, atol=1e-6)


def test_an_even_lrn_window_reaches_one_channel_further_up_than_down(tmp_path):
    """onnxruntime refuses even sizes (and onnx.reference's LRN loops over the batch, not the channels), so
    the spec is written out here: channels [c - floor((size-1)/2), c + ceil((size-1)/2)]."""
    x = np.random.default_rng(1).normal(size=(2, 6, 3, 2)).astype(np.float32)
    model = normalize.normalize(
        model_io.load(save(_lrn_model(x.shape, 13, size=4, alpha=0.5), tmp_path / "m.onnx"))
    )
    assert LRN.apply(model, Finding("divergence", "", node="op", op="LRN"), RuleContext()) is None
    normalize.tidy(model)
    (actual,) = oracle.evaluate(model, [{"x": x}]).outputs
    padded = np.pad(x.astype(np.float64) ** 2, [(0, 0), (1, 2), (0, 0), (0, 0)])
    window = sum(padded[:, k : k + 6] for k in range(4))
    np.testing.assert_allclose(actual["y"], x / (1 + 0.5 / 4 * window) ** 0.75, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_the_suite_lrn_diverges_plain_and_matches_once_decomposed(target, tmp_path):
    """The node suite's test_lrn_default case: size 3, alpha 1e-4, beta 0.75, bias 1, input (5, 5, 5, 5)."""
    path = save(_lrn_model((5, 5, 5, 5), 13, size=3), tmp_path / "lrn.onnx")
    rng = np.random.default_rng(0)
    probe = {"x": rng.normal(size=(5, 5, 5, 5)).astype(np.float32)}
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert plain.converted and plain.layout_problems

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "lrn-decomposed" in [s.rule for s in report.accepted_steps]
    fresh = {"x": (rng.normal(size=(5, 5, 5, 5)) * 2).astype(np.float32)}
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], _onnxruntime(path, fresh), rtol=1e-5, atol=1e-5)
