"""Each built-in rule on a model that needs it, checked against the reference with onnxruntime.

(The TF side of the same rules is proven in test_end_to_end.py with the real converter.)
"""

import numpy as np
import pytest
from conftest import EXAMPLES, needs_torch, save, unary_model
from onnx import TensorProto, helper

from convfix import model_io, normalize, oracle, probes
from convfix.findings import Finding
from convfix.parity import Tolerance, compare_outputs
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules}


def _apply(path, rule_name, finding, context=None):
    model = normalize.normalize(model_io.load(path))
    probe_set = probes.make_probes(probes.input_specs(model), (context or RuleContext()).pinned_shapes)
    before = oracle.evaluate(model, probe_set)
    reason = RULES[rule_name].apply(model, finding, context or RuleContext())
    assert reason is None
    normalize.tidy(model)
    after = oracle.evaluate(model, probe_set)
    return model, before, after


def _ops(model):
    return {(n.domain, n.op_type) for n in model.graph.all_nodes()}


def test_entr_decomposition_matches_torch_including_zero_and_negatives(tmp_path):
    needs_torch()
    model = normalize.normalize(model_io.load(EXAMPLES / "entr.onnx"))
    x = np.array([[0.0, 1e-8, 0.5, 1.0, 3.0, -0.5, np.nan, np.inf]] * 3, np.float32)
    before = oracle.evaluate(model, [{"x": x}])
    assert before.oracle == "onnx.reference+torch(aten)"
    assert RULES["decompose-aten-entr"].apply(model, Finding("unsupported-op", ""), RuleContext()) is None
    assert ("org.pytorch.aten", "special_entr") not in _ops(model)
    after = oracle.evaluate(model, [{"x": x}])
    assert after.oracle == "onnxruntime"
    assert compare_outputs(before.outputs, after.outputs, Tolerance(1e-6, 1e-6)).ok


def test_entr_decomposition_also_matches_the_aten_fallback_form(tmp_path):
    needs_torch()
    path = save(
        unary_model("ATen", domain="org.pytorch.aten", operator="special_entr"), tmp_path / "aten.onnx"
    )
    model, before, after = _apply(path, "decompose-aten-entr", Finding("unsupported-op", ""))
    assert ("org.pytorch.aten", "ATen") not in _ops(model)
    assert compare_outputs(before.outputs, after.outputs, Tolerance()).ok


def test_if_to_where_keeps_both_branches_exact():
    model = normalize.normalize(model_io.load(EXAMPLES / "cond.onnx"))
    node = next(n for n in model.graph if n.op_type == "If")
    finding = Finding("control-flow", "", node=node.name, op="If")
    model, before, after = _apply(EXAMPLES / "cond.onnx", "if-to-where", finding)
    assert "If" not in {t for _, t in _ops(model)}
    assert compare_outputs(before.outputs, after.outputs, Tolerance(0, 0)).ok
    taken = oracle.branch_coverage(
        normalize.normalize(model_io.load(EXAMPLES / "cond.onnx")),
        probes.make_probes(probes.input_specs(model)),
    )
    assert set(next(iter(taken.values()))) == {True, False}


def _if_model(condition_value):
    then_g = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["t"])],
        "then",
        [],
        [helper.make_tensor_value_info("t", TensorProto.FLOAT, [2])],
    )
    else_g = helper.make_graph(
        [helper.make_node("Abs", ["x"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
    )
    nodes = [
        helper.make_node(
            "Constant", [], ["c"], value=helper.make_tensor("c", TensorProto.BOOL, [], [condition_value])
        ),
        helper.make_node("If", ["c"], ["y"], name="if0", then_branch=then_g, else_branch=else_g),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("condition", [True, False])
def test_constant_if_folds_to_the_branch_it_takes(tmp_path, condition):
    path = save(_if_model(condition), tmp_path / "if.onnx")
    model, before, after = _apply(path, "fold-constant-if", Finding("control-flow", "", node="if0", op="If"))
    assert {t for _, t in _ops(model)} == ({"Neg"} if condition else {"Abs"})
    assert compare_outputs(before.outputs, after.outputs, Tolerance(0, 0)).ok


def test_fold_constant_if_declines_a_runtime_condition():
    model = normalize.normalize(model_io.load(EXAMPLES / "cond.onnx"))
    node = next(n for n in model.graph if n.op_type == "If")
    reason = RULES["fold-constant-if"].apply(
        model, Finding("control-flow", "", node=node.name), RuleContext()
    )
    assert reason == "the condition is not a constant"


def test_pin_input_shape_fixes_the_dim_and_downstream_shapes():
    context = RuleContext({"x": (4, 20)})
    finding = Finding("dynamic-shape", "", subject="x")
    model, before, after = _apply(EXAMPLES / "dynamic_mean.onnx", "pin-input-shape", finding, context)
    assert list(model.graph.inputs[0].shape) == [4, 20]
    assert list(model.graph.outputs[0].shape) == [4]
    assert compare_outputs(before.outputs, after.outputs, Tolerance(0, 0)).ok
    assert RULES["pin-input-shape"].apply(model, finding, RuleContext()) is not None
