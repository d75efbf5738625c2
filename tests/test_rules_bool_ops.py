"""expand-bool: Expand of a bool mask to a dynamic shape, which onnx2tf expands by a multiplication."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "expand-bool")
FINDING = Finding("conversion-error", "", node="expand", op="Expand")


def _model(mask_shape=(1, 1, "s", 1), scores_shape=("b", 2, "s", "s")) -> onnx.ModelProto:
    """An attention-style mask broadcast to the scores' run-time shape, then selecting scores or -inf."""
    nodes = [
        helper.make_node("Shape", ["scores"], ["shape"], name="shape"),
        helper.make_node("Expand", ["mask", "shape"], ["wide"], name="expand"),
        helper.make_node("Where", ["wide", "scores", "neg"], ["y"], name="where"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("mask", TensorProto.BOOL, list(mask_shape)),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, list(scores_shape)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(scores_shape))],
        initializer=[helper.make_tensor("neg", TensorProto.FLOAT, [], [-np.inf])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _probe(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "mask": rng.random((1, 1, seq, 1)) < 0.5,
        "scores": rng.normal(size=(batch, 2, seq, seq)).astype(np.float32),
    }


def _expected(probe: dict[str, np.ndarray]) -> np.ndarray:
    return np.where(probe["mask"], probe["scores"], -np.inf).astype(np.float32)


def test_the_rewrite_expands_on_integers_and_keeps_the_mask(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(), tmp_path / "m.onnx")))
    assert RULE.apply(model, FINDING, RuleContext()) is None
    expands = [n for n in model.graph if n.op_type == "Expand"]
    assert [n.inputs[0].dtype for n in expands] == [ir.DataType.INT32]
    probes = [_probe(b, s, seed) for seed, (b, s) in enumerate([(1, 1), (5, 5), (10, 10), (2, 7)])]
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(outputs["y"], _expected(probe))


def test_an_expand_of_floats_is_left_alone(tmp_path):
    proto = _model()
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    proto.graph.node[2].op_type = "Mul"
    proto.graph.node[2].input[:] = ["wide", "scores"]
    model = normalize.normalize(model_io.load(save(proto, tmp_path / "m.onnx")))
    reason = RULE.apply(model, FINDING, RuleContext())
    assert reason is not None and "bool" in reason


@pytest.mark.slow
def test_a_bool_mask_expanded_to_dynamic_dims_converts_once_rewritten(target, tmp_path):
    path = save(_model(), tmp_path / "mask.onnx")
    probes = [_probe(b, s, seed) for seed, (b, s) in enumerate([(1, 1), (5, 5), (10, 10)])]
    plain = target.convert(path, tmp_path / "plain", probes[:1], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "DataType bool" in plain.error or "dtype=tf.bool" in plain.error

    assert any(f.kind == "dtype" and f.op == "Expand" for f in convfix.scan(path))
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "expand-bool" in [s.rule for s in report.accepted_steps]
    probe = _probe(3, 4, seed=7)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], _expected(probe))
