"""conv-transpose-depth-to-space: a U-Net up-sampling ConvTranspose (kernel == stride) on a dynamic
batch, which onnx2tf builds with the batch's name as a shape."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "conv-transpose-depth-to-space")
FINDING = Finding("conversion-error", "", node="up", op="ConvTranspose")
C_IN, C_OUT = 4, 3


def _model(k: int = 2, stride: int = 2, bias: bool = True, batch="batch") -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=(C_IN, C_OUT, k, k)).astype(np.float32), "w")]
    weights += [numpy_helper.from_array(rng.normal(size=C_OUT).astype(np.float32), "b")] if bias else []
    node = helper.make_node(
        "ConvTranspose", ["h", "w", "b"][: len(weights) + 1], ["y"], name="up", strides=[stride, stride]
    )
    relu = helper.make_node("Relu", ["x"], ["h"], name="relu")
    graph = helper.make_graph(
        [relu, node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, C_IN, 5, 6])],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, [batch, C_OUT, 4 * stride + k, 5 * stride + k]
            )
        ],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _probe(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(batch, C_IN, 5, 6)).astype(np.float32)}


@pytest.mark.parametrize(("k", "bias"), [(2, True), (3, False)])
def test_the_rewrite_computes_the_transposed_convolution(tmp_path, k, bias):
    path = save(_model(k, k, bias), tmp_path / "m.onnx")
    probes = [_probe(b, seed) for seed, b in enumerate((1, 5, 10))]
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    model = normalize.normalize(model_io.load(path))
    assert RULE.apply(model, FINDING, RuleContext()) is None
    assert [n.op_type for n in model.graph if n.op_type != "Constant"] == ["Relu", "Conv", "DepthToSpace"]
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        assert got["y"].shape == want["y"].shape
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)


def test_overlapping_patches_are_refused(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(k=3, stride=2), tmp_path / "m.onnx")))
    reason = RULE.apply(model, FINDING, RuleContext())
    assert reason is not None and "strides" in reason


@pytest.mark.slow
def test_an_upsampling_on_a_dynamic_batch_converts_once_rewritten(target, tmp_path):
    path = save(_model(), tmp_path / "up.onnx")
    probes = [_probe(b, seed) for seed, b in enumerate((1, 5, 10))]
    plain = target.convert(path, tmp_path / "plain", probes[:1], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "input_sizes" in plain.error or "axes don" in plain.error, plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), target=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "conv-transpose-depth-to-space" in [s.rule for s in report.accepted_steps]
    probe = _probe(3, seed=7)
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_allclose(outputs["y"], expected["y"], rtol=1e-4, atol=1e-4)
