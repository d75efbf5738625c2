"""chain-sum-mean: Sum/Mean over broadcasting inputs, which onnx2tf cannot build, as chains of Add."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "chain-sum-mean")


def _model() -> onnx.ModelProto:
    """y = Sum(a, b, c) and z = Mean(a, b) with a: [3], b: [2, 3], c: [1]."""
    nodes = [
        helper.make_node("Sum", ["a", "b", "c"], ["y"], name="sum"),
        helper.make_node("Mean", ["a", "b"], ["z"], name="mean"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3]),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _probe(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "a": rng.normal(size=3).astype(np.float32),
        "b": rng.normal(size=(2, 3)).astype(np.float32),
        "c": rng.normal(size=1).astype(np.float32),
    }


def test_the_chain_computes_sum_and_mean(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(), tmp_path / "m.onnx")))
    assert RULE.apply(model, Finding("conversion-error", "", node="sum", op="Sum"), RuleContext()) is None
    assert [n.op_type for n in model.graph] == ["Add", "Add", "Add", "Constant", "Div"]
    probe = _probe()
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    np.testing.assert_array_equal(outputs["y"], probe["a"] + probe["b"] + probe["c"])
    np.testing.assert_allclose(outputs["z"], (probe["a"] + probe["b"]) / 2, rtol=1e-6)


@pytest.mark.slow
def test_broadcasting_sum_and_mean_convert_once_chained(target, tmp_path):
    path = save(_model(), tmp_path / "sum_mean.onnx")
    plain = target.convert(path, tmp_path / "plain", [_probe()], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "add_n" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["chain-sum-mean"]
    probe = _probe(1)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_allclose(outputs["y"], probe["a"] + probe["b"] + probe["c"], rtol=1e-6)
    np.testing.assert_allclose(outputs["z"], (probe["a"] + probe["b"]) / 2, rtol=1e-6)
