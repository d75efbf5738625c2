"""einsum-as-matmul: two-operand Einsums over dynamic dims as Transpose, MatMul, Transpose."""

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

RULE = next(r for r in discover().rules if r.name == "einsum-as-matmul")
SIZES = {"b": 2, "h": 3, "i": 4, "j": 5, "d": 6, "n": 7, "k": 2}
DYNAMIC = {"b", "i", "j"}


def _model(equation: str) -> onnx.ModelProto:
    """y = Einsum(x, w) with the letters b, i, j dynamic."""
    (left, right), output = equation.split("->")[0].split(","), equation.split("->")[1]

    def info(name: str, term: str, elem=TensorProto.FLOAT):
        return helper.make_tensor_value_info(name, elem, [c if c in DYNAMIC else SIZES[c] for c in term])

    graph = helper.make_graph(
        [helper.make_node("Einsum", ["x", "w"], ["y"], name="einsum", equation=equation)],
        "g",
        [info("x", left), info("w", right)],
        [info("y", output)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _probe(equation: str, seed: int) -> dict[str, np.ndarray]:
    (left, right) = equation.split("->")[0].split(",")
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(size=[SIZES[c] for c in term]).astype(np.float32)
        for name, term in (("x", left), ("w", right))
    }


@pytest.mark.parametrize(
    "equation",
    [
        "bhid,bhjd->bhij",
        "bhij,bhjd->bhid",
        "bij,bjk->bik",
        "bn,bn->b",
        "i,j->ij",
        "bid,bjd->bji",
        "bhd,bd->bh",
        "bid,bjn->bij",
    ],
)
def test_the_matmul_computes_the_einsum(tmp_path, equation):
    model = normalize.normalize(model_io.load(save(_model(equation), tmp_path / "m.onnx")))
    rewritten = model_io.clone(model)
    assert RULE.apply(rewritten, Finding("divergence", "", node="einsum", op="Einsum"), RuleContext()) is None
    normalize.tidy(rewritten)
    assert "Einsum" not in {n.op_type for n in rewritten.graph}
    probes = [_probe(equation, seed) for seed in (0, 1)]
    for want, got in zip(
        oracle.evaluate(model, probes).outputs, oracle.evaluate(rewritten, probes).outputs, strict=True
    ):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("equation", ["bii,bij->bj", "bij,bjk,bkl->bil", "bij,bk->bijk", "bid,d->bi"])
def test_a_repeated_letter_three_operands_or_two_free_letters_on_a_side_are_left(tmp_path, equation):
    operands = [f"x{i}" for i in range(equation.count(",") + 1)]
    graph = helper.make_graph(
        [helper.make_node("Einsum", operands, ["y"], name="einsum", equation=equation)],
        "g",
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, ["b"] + [3] * (len(term) - 1))
            for name, term in zip(operands, equation.split("->")[0].split(","), strict=True)
        ],
        [
            helper.make_tensor_value_info(
                "y", TensorProto.FLOAT, ["b"] + [3] * (len(equation.split("->")[1]) - 1)
            )
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    loaded = model_io.load(save(model, tmp_path / "m.onnx"))
    reason = RULE.apply(loaded, Finding("divergence", "", node="einsum", op="Einsum"), RuleContext())
    assert reason is not None and "no two-operand Einsum" in reason


@pytest.mark.slow
def test_a_dynamic_attention_einsum_fails_plain_and_is_repaired(target, tmp_path):
    """The scores of attention as an Einsum, then Softmax, with batch and both sequences dynamic."""
    model = _model("bhid,bhjd->bhij")
    model.graph.node.append(helper.make_node("Softmax", ["y"], ["p"], name="softmax", axis=-1))
    model.graph.output[0].name = "p"
    path = save(model, tmp_path / "m.onnx")
    probes = [_probe("bhid,bhjd->bhij", seed) for seed in (0, 1)]
    expected = oracle.evaluate(model_io.load(path), probes).outputs
    plain = target.convert(path, tmp_path / "plain", probes, expected, rtol=1e-4, atol=1e-4)
    assert not plain.verified

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "einsum-as-matmul" in [s.rule for s in report.accepted_steps]
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
