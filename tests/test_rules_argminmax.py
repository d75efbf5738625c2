"""argminmax-last-index: ArgMax/ArgMin with select_last_index=1, which onnx2tf fails to build."""

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

RULE = next(r for r in discover().rules if r.name == "argminmax-last-index")


def _model(op_type: str = "ArgMax", axis: int = -1, keepdims: int = 0) -> onnx.ModelProto:
    node = helper.make_node(
        op_type, ["x"], ["y"], name="arg", axis=axis, keepdims=keepdims, select_last_index=1
    )
    out_shape = [2, 5, 1] if keepdims else [2, 5]
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 6])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, out_shape)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _probe(seed: int = 0) -> dict[str, np.ndarray]:
    """Small integers, so that every row has ties and first and last index differ."""
    return {"x": np.random.default_rng(seed).integers(0, 3, size=(2, 5, 6)).astype(np.float32)}


def _last_index(x: np.ndarray, op_type: str) -> np.ndarray:
    reversed_x = x[..., ::-1]
    first = reversed_x.argmax(-1) if op_type == "ArgMax" else reversed_x.argmin(-1)
    return x.shape[-1] - 1 - first


@pytest.mark.parametrize(("op_type", "keepdims"), [("ArgMax", 0), ("ArgMin", 1)])
def test_the_rewrite_picks_the_last_extreme(tmp_path, op_type, keepdims):
    model = normalize.normalize(model_io.load(save(_model(op_type, keepdims=keepdims), tmp_path / "m.onnx")))
    assert RULE.apply(model, Finding("conversion-error", "", node="arg", op=op_type), RuleContext()) is None
    probe = _probe()
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    expected = _last_index(probe["x"], op_type)
    np.testing.assert_array_equal(outputs["y"], expected[..., None] if keepdims else expected)


@pytest.mark.slow
def test_select_last_index_converts_once_rewritten(target, tmp_path):
    path = save(_model(), tmp_path / "argmax.onnx")
    plain = target.convert(path, tmp_path / "plain", [_probe()], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "tf.reverse" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["argminmax-last-index"]
    probe = _probe(1)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], _last_index(probe["x"], "ArgMax"))
