"""The three motivating cases end to end, with the real onnx2tf and TensorFlow (no mocks).

One conversion worker serves the whole module (TensorFlow is imported once); the CLI contract is
exercised through real subprocesses in test_cli.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
import tensorflow_free_guard  # noqa: F401 - asserts the engine itself never imports TensorFlow
from conftest import EXAMPLES, digest, example_models, needs_torch, save, scale_model
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, engine, model_io

pytestmark = pytest.mark.slow


def _repair(target, name, tmp_path, **options):
    source = EXAMPLES / name
    before = digest(source)
    opts = RepairOptions(
        output=tmp_path / "out.onnx", tf_out=tmp_path / "tf", report_path=tmp_path / "report.json", **options
    )
    report = convfix.repair(source, opts, backend=target)
    assert digest(source) == before, "the input file must never change"
    return report, json.loads((tmp_path / "report.json").read_text())


def _run_saved_model(target, tmp_path, probe_set):
    return target.run(tmp_path / "tf", probe_set)


def test_plain_conversion_fails_on_the_aten_and_if_examples(target, tmp_path):
    for name in ("entr.onnx", "cond.onnx"):
        model = model_io.load(EXAMPLES / name)
        out = tmp_path / name
        out.mkdir()
        result = target.convert(EXAMPLES / name, out, [], [], rtol=1e-4, atol=1e-4)
        assert not result.converted, name
        assert result.error
        assert set(result.error_nodes) <= {n.name for n in model.graph.all_nodes()}


def test_entr_is_decomposed_and_tf_matches_torch(target, tmp_path):
    needs_torch()
    _report, data = _repair(target, "entr.onnx", tmp_path, tflite=True)
    assert data["status"] == "repaired", data
    assert data["oracle"] == "onnx.reference+torch(aten)"
    assert data["findings"][0]["kind"] == "unsupported-op"
    assert "decompose-aten-entr" in data["findings"][0]["rules"]
    accepted = [s for s in data["steps"] if s["accepted"]]
    assert accepted[0]["rule"] == "decompose-aten-entr" and accepted[0]["parity"]["ok"]
    assert data["tf"]["converted"] and data["tf"]["parity"]["ok"]
    assert len(data["tf"]["parity"]["per_probe_max_abs_err"]) == 3
    assert data["tf"]["tflite_parity"]["ok"]
    last_attempt, timings = data["tf"]["seconds"], data["timings"]  # timings sum every attempt
    rounding = 0.002  # each figure is rounded to 1 ms
    converting = sum(last_attempt[k] for k in ("convert", "save", "tflite"))
    verifying = sum(last_attempt[k] for k in ("layout", "run", "tflite_run"))
    assert timings["onnx2tf"] + rounding >= converting > 0
    assert timings["tf_verification"] + rounding >= verifying > 0
    x = np.array([[0.0, 0.25, 1.0, 2.0, -1.0, 0.5, 3.0, 1e-6]] * 3, np.float32)
    (y,) = _run_saved_model(target, tmp_path, [{"x": x}])[0].values()
    torch = needs_torch()

    np.testing.assert_allclose(y, torch.special.entr(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
    tflite_y = target.run(tmp_path / "tf" / "model.tflite", [{"x": x}])[0]["y"]
    np.testing.assert_allclose(tflite_y, y, rtol=1e-5, atol=1e-6)


def test_dynamic_batch_is_verified_at_several_sizes(target, tmp_path):
    report, data = _repair(target, "dynamic_mean.onnx", tmp_path)
    assert report.exit_code == 0, data
    assert sorted(p["x"][0] for p in data["probes"]) == [1, 5, 10]
    assert any(f["kind"] == "dynamic-shape" and not f["blocking"] for f in data["findings"])
    for batch in (1, 5, 10, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 20)).astype(np.float32)
        y = _run_saved_model(target, tmp_path, [{"x": x}])[0]["y"]
        np.testing.assert_allclose(y, x.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_input_shape_pins_the_batch(target, tmp_path):
    report, data = _repair(target, "dynamic_mean.onnx", tmp_path, input_shapes=["x=4,20"])
    assert report.exit_code == 0, data
    assert {tuple(p["x"]) for p in data["probes"]} == {(4, 20)}
    assert any(s["rule"] == "pin-input-shape" and s["accepted"] for s in data["steps"])
    repaired = model_io.load(tmp_path / "out.onnx")
    assert list(repaired.graph.inputs[0].shape) == [4, 20]
    with pytest.raises(convfix.ConvfixError):
        _run_saved_model(target, tmp_path, [{"x": np.ones((5, 20), np.float32)}])


def _two_dynamic_dims() -> onnx.ModelProto:
    """A mean over the last axis of an input whose batch and feature dims are both dynamic."""
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[1], keepdims=0)
    graph = helper.make_graph(
        [node],
        "two_dynamic_dims",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "features"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def test_a_question_mark_in_a_pin_keeps_that_dim_dynamic(target, tmp_path):
    path = save(_two_dynamic_dims(), tmp_path / "m.onnx")
    report = convfix.repair(
        path, output=tmp_path / "out.onnx", tf_out=tmp_path / "tf", input_shapes="x=?,20", backend=target
    )
    assert report.exit_code == 0, report.to_json()
    shapes = [tuple(p["x"]) for p in report.probes]
    assert {s[1] for s in shapes} == {20} and len({s[0] for s in shapes}) > 1
    dims = list(model_io.load(tmp_path / "out.onnx").graph.inputs[0].shape)
    assert not isinstance(dims[0], int) and dims[1] == 20
    for batch in (2, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 20)).astype(np.float32)
        y = _run_saved_model(target, tmp_path, [{"x": x}])[0]["y"]
        np.testing.assert_allclose(y, x.mean(axis=1), rtol=1e-5, atol=1e-6)


def test_a_model_left_dynamic_that_fails_is_told_how_to_pin_it():
    model = ir.serde.deserialize_model(_two_dynamic_dims())
    note = engine._pinning_suggestion(model, {})
    assert "--input-shape x=<batch>,<features>" in note and "--input-shape x=?,<features>" in note
    assert engine._pinning_suggestion(model, {"x": (None, 7)}) is None


def test_if_becomes_where_and_tf_matches_on_both_branches(target, tmp_path):
    _report, data = _repair(target, "cond.onnx", tmp_path)
    assert data["status"] == "repaired", data
    assert next(s["rule"] for s in data["steps"] if s["accepted"]) == "if-to-where"
    (taken,) = data["branch_coverage"].values()
    assert set(taken) == {True, False}
    positive = np.abs(np.random.default_rng(1).standard_normal((3, 8))).astype(np.float32)
    for x, expected in ((positive, positive * 2), (-positive, -positive + 1)):
        y = _run_saved_model(target, tmp_path, [{"x": x}])[0]["y"]
        np.testing.assert_allclose(y, expected, rtol=1e-6)


def test_a_user_rule_from_a_directory_is_tried_before_the_builtins(target, tmp_path):
    needs_torch()
    builtin = convfix.repair(EXAMPLES / "sinc.onnx", RepairOptions(), backend=target)
    assert builtin.status == "repaired"
    assert builtin.accepted_steps[0].rule == "decompose-aten-with-torch"
    report = convfix.repair(
        EXAMPLES / "sinc.onnx", RepairOptions(rule_dirs=[EXAMPLES / "user_rules"]), backend=target
    )
    assert report.status == "repaired"
    assert report.accepted_steps[0].rule == "user-decompose-aten-sinc"


def test_check_tells_a_matching_tf_model_from_a_different_one(target, tmp_path):
    two = save(scale_model(2.0), tmp_path / "two.onnx")
    three = save(scale_model(3.0), tmp_path / "three.onnx")
    convfix.repair(three, RepairOptions(tf_out=tmp_path / "three_tf"), backend=target)
    assert convfix.check(three, tmp_path / "three_tf", backend=target).parity.ok
    differs = convfix.check(two, tmp_path / "three_tf", backend=target)
    assert not differs.parity.ok
    assert differs.parity.max_abs_err > 0.1


def test_repair_torch_uses_eager_pytorch_as_the_reference(target, tmp_path):
    torch = needs_torch()

    models = example_models()
    SignBranch, SignBranchPython = models.SignBranch, models.SignBranchPython

    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    result = convfix.repair_torch(SignBranch(), (x,), input_names=["x"], backend=target, workdir=tmp_path)
    assert result.exporter == "dynamo"
    assert result.report.oracle == "torch (eager module)"
    assert result.report.status == "repaired", result.report.to_json()

    baked = convfix.repair_torch(
        SignBranchPython(), (x,), input_names=["x"], exporter="torchscript", backend=target, workdir=tmp_path
    )
    assert baked.report.status != "repaired"
    assert any("differs from PyTorch eager" in note for note in baked.report.notes)


WRONG_RULES = '''
from convfix.rules import Rule
from convfix.rewriting import find_node, replace_node
from convfix.rewrites.control_flow import _inline_branch


def always_then(model, finding, context):
    """Wrong on purpose: takes the then-branch whatever the condition says."""
    node = find_node(model, finding)
    replace_node(node, _inline_branch(node, node.attributes["then_branch"].as_graph()))


def explode(model, finding, context):
    raise RuntimeError("boom")


RULES = [
    Rule("explode", ("control-flow",), explode, "raises"),
    Rule("always-then", ("control-flow",), always_then, "wrong"),
]
'''


def test_a_rewrite_that_breaks_parity_is_rolled_back_and_the_next_rule_tried(target, tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "wrong.py").write_text(WRONG_RULES)
    report = convfix.repair(EXAMPLES / "cond.onnx", RepairOptions(rule_dirs=[rules]), backend=target)
    outcomes = [(s.rule, s.accepted, s.outcome.split(":")[0]) for s in report.steps]
    assert outcomes[:3] == [
        ("explode", False, "error"),
        ("always-then", False, "rolled back"),
        ("fold-constant-if", False, "not applicable"),
    ]
    assert outcomes[3] == ("if-to-where", True, "accepted")
    assert report.steps[1].parity.max_abs_err > 0.5
    assert report.status == "repaired"


def _without_times(report: dict) -> dict:
    report = json.loads(json.dumps(report))
    report.pop("timings")
    report["tf"].pop("seconds")
    for step in report["steps"]:
        step.pop("seconds")
    return report


@pytest.mark.parametrize("name", ["entr.onnx", "cond.onnx"])
def test_same_input_same_output_bytes_and_report(target, tmp_path, name):
    if name == "entr.onnx":
        needs_torch()
    runs = []
    for attempt in ("a", "b"):
        folder = tmp_path / attempt
        opts = RepairOptions(output=folder / "out.onnx", report_path=folder / "report.json")
        convfix.repair(EXAMPLES / name, opts, backend=target)
        report = _without_times(json.loads((folder / "report.json").read_text()))
        report["output"] = Path(report["output"]).name
        runs.append(((folder / "out.onnx").read_bytes(), report))
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1]


def test_external_weights_are_inlined_for_onnx2tf_which_misreads_them(target, tmp_path, monkeypatch):
    import onnxruntime as ort

    sys.path.insert(0, str(EXAMPLES.parent / "benchmarks"))
    import big_model

    monkeypatch.setattr(big_model, "WIDTH", 256)
    (tmp_path / "in").mkdir()
    source, _ = big_model.build(tmp_path / "in", 3 * 256 * 256 * 4 / 1e9)
    x = np.random.default_rng(1).standard_normal((1, 256)).astype(np.float32)
    reference = ort.InferenceSession(str(source)).run(None, {"x": x})[0]
    plain = target.convert(source, tmp_path / "plain", [{"x": x}], [{"y": reference}], rtol=1e-4, atol=1e-4)
    assert plain.layout_problems, "plain onnx2tf got external weights right: the inlining may be unneeded"

    report = convfix.repair(source, RepairOptions(output=tmp_path / "out" / "fixed.onnx"), backend=target)
    assert report.status == "clean" and report.tf.parity.ok
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fixed.onnx", "fixed.onnx.data"]
