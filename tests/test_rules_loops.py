"""unroll-loop, unroll-scan, stack-sequence: Loop and Scan with a static trip count, and the Python
lists appended to in them, which onnx2tf fails to convert."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.matcher import walk
from convfix.rules import RuleContext, discover

RULES = {r.name: r for r in discover().rules if r.name in ("unroll-loop", "unroll-scan", "stack-sequence")}
TRIPS = 5
W = np.linspace(-1.0, 1.5, 6, dtype=np.float32).reshape(2, 3)


def _nested_if() -> list[onnx.NodeProto]:
    """scan_v = x_next * w when i > 2, else -x_next: a subgraph in the body, reading two scopes up."""
    then_graph = helper.make_graph(
        [helper.make_node("Mul", ["x_next", "w"], ["then_v"], name="then_mul")],
        "then",
        [],
        [helper.make_tensor_value_info("then_v", TensorProto.FLOAT, [2, 3])],
    )
    else_graph = helper.make_graph(
        [helper.make_node("Neg", ["x_next"], ["else_v"], name="else_neg")],
        "else",
        [],
        [helper.make_tensor_value_info("else_v", TensorProto.FLOAT, [2, 3])],
    )
    two = helper.make_tensor("two", TensorProto.INT64, [], [2])
    return [
        helper.make_node("Constant", [], ["two"], name="two", value=two),
        helper.make_node("Greater", ["i", "two"], ["late"], name="late"),
        helper.make_node(
            "If", ["late"], ["scan_v"], name="branch", then_branch=then_graph, else_branch=else_graph
        ),
    ]


def _loop_model(trips: onnx.TensorProto | None = None, nested: bool = False, cond_out: str = "cond_in"):
    """x_{i+1} = x_i * w + float(i), w a weight read from inside the body; y = x_M, s = every x_{i+1}."""
    scan_nodes = _nested_if() if nested else [helper.make_node("Identity", ["x_next"], ["scan_v"], name="s")]
    cond_nodes = {
        "cond_in": [helper.make_node("Identity", ["cond_in"], ["cond_out"], name="keep")],
        "data": [
            helper.make_node("ReduceMax", ["x_next"], ["top"], name="top", keepdims=0),
            helper.make_node("Less", ["top", "limit"], ["cond_out"], name="under"),
        ],
    }[cond_out]
    body = helper.make_graph(
        [
            helper.make_node("Mul", ["x_in", "w"], ["xw"], name="scale"),
            helper.make_node("Cast", ["i"], ["fi"], name="to_float", to=TensorProto.FLOAT),
            helper.make_node("Add", ["xw", "fi"], ["x_next"], name="shift"),
            *scan_nodes,
            *cond_nodes,
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x_next", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("scan_v", TensorProto.FLOAT, [2, 3]),
        ],
    )
    weights = [
        helper.make_tensor("w", TensorProto.FLOAT, [2, 3], W.ravel().tolist()),
        helper.make_tensor("limit", TensorProto.FLOAT, [], [1e3]),
        helper.make_tensor("true", TensorProto.BOOL, [], [True]),
    ]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    if trips is None:
        inputs.append(helper.make_tensor_value_info("m", TensorProto.INT64, []))
    nodes = [] if trips is None else [helper.make_node("Constant", [], ["m"], name="trips", value=trips)]
    nodes.append(helper.make_node("Loop", ["m", "true", "x"], ["y", "s"], name="loop", body=body))
    graph = helper.make_graph(
        nodes,
        "g",
        inputs,
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [None, 2, 3]),
        ],
        initializer=weights,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _trips(count: int = TRIPS) -> onnx.TensorProto:
    return helper.make_tensor("m", TensorProto.INT64, [], [count])


def _expected(x: np.ndarray, nested: bool = False) -> dict[str, np.ndarray]:
    scans = []
    for i in range(TRIPS):
        x = x * W + np.float32(i)
        scans.append(x * W if nested and i > 2 else (-x if nested else x))
    return {"y": x, "s": np.stack(scans)}


def _probe(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).standard_normal((2, 3)).astype(np.float32)}


def _load(model: onnx.ModelProto, path):
    return normalize.normalize(model_io.load(save(model, path)))


def _apply(name: str, model, node: str = "loop", op: str = "Loop") -> str | None:
    return RULES[name].apply(model, Finding("control-flow", "", node=node, op=op), RuleContext())


@pytest.mark.parametrize("nested", [False, True])
def test_the_unrolled_loop_computes_what_the_loop_did(tmp_path, nested):
    original = _load(_loop_model(_trips(), nested), tmp_path / "loop.onnx")
    model = _load(_loop_model(_trips(), nested), tmp_path / "unrolled.onnx")
    assert _apply("unroll-loop", model) is None
    normalize.tidy(model)
    assert not [n for n, _ in walk(model.graph) if n.op_type == "Loop"]
    probe = _probe()
    (reference,) = oracle.evaluate(original, [probe]).outputs
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    for name, expected in _expected(probe["x"], nested).items():
        np.testing.assert_array_equal(outputs[name], reference[name])
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("trips", "cond_out", "reason"),
    [
        (None, "cond_in", "the trip count is absent or not a constant"),
        (_trips(), "data", "the body's condition may turn false: the loop may stop early"),
        (_trips(65), "cond_in", "65 iterations: more than 64 are not unrolled"),
        (_trips(0), "cond_in", "0 iterations: the shapes of empty scan outputs cannot be known"),
    ],
)
def test_a_loop_that_may_not_run_every_trip_is_left_alone(tmp_path, trips, cond_out, reason):
    model = _load(_loop_model(trips, cond_out=cond_out), tmp_path / "loop.onnx")
    assert _apply("unroll-loop", model) == reason
    assert [n.op_type for n in model.graph if n.op_type == "Loop"] == ["Loop"]


def _scan_model() -> onnx.ModelProto:
    """A running sum over axis 1 read backwards, its partial sums stacked on the last axis, prepended."""
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "column"], ["acc_out"], name="add"),
            helper.make_node("Mul", ["acc_out", "w"], ["scaled"], name="scale"),
        ],
        "body",
        [
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("column", TensorProto.FLOAT, [2]),
        ],
        [
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("scaled", TensorProto.FLOAT, [2]),
        ],
    )
    scan = helper.make_node(
        "Scan",
        ["init", "x"],
        ["y", "s"],
        name="scan",
        body=body,
        num_scan_inputs=1,
        scan_input_axes=[1],
        scan_input_directions=[1],
        scan_output_axes=[-1],
        scan_output_directions=[1],
    )
    graph = helper.make_graph(
        [scan],
        "g",
        [
            helper.make_tensor_value_info("init", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2]),
            helper.make_tensor_value_info("s", TensorProto.FLOAT, [2, 4]),
        ],
        initializer=[helper.make_tensor("w", TensorProto.FLOAT, [2], [2.0, -0.5])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_unrolled_scan_computes_what_the_scan_did(tmp_path):
    original = _load(_scan_model(), tmp_path / "scan.onnx")
    model = _load(_scan_model(), tmp_path / "unrolled.onnx")
    assert _apply("unroll-scan", model, node="scan", op="Scan") is None
    normalize.tidy(model)
    rng = np.random.default_rng(0)
    probe = {
        "init": rng.standard_normal(2).astype(np.float32),
        "x": rng.standard_normal((2, 4)).astype(np.float32),
    }
    (reference,) = oracle.evaluate(original, [probe]).outputs
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    acc, sums = probe["init"], []
    for t in range(3, -1, -1):
        acc = acc + probe["x"][:, t]
        sums.append(acc * np.array([2.0, -0.5], np.float32))
    np.testing.assert_array_equal(outputs["y"], reference["y"])
    np.testing.assert_array_equal(outputs["s"], reference["s"])
    np.testing.assert_allclose(outputs["y"], acc, rtol=1e-6)
    np.testing.assert_allclose(outputs["s"], np.stack(sums[::-1], -1), rtol=1e-6)


def _sequence_model(new_axis: int, position: bool = False) -> onnx.ModelProto:
    """A list of x, 2x, 3x (one insert at position 0 when `position`), concatenated on the last axis."""
    nodes = [helper.make_node("SequenceEmpty", [], ["seq_0"], name="empty", dtype=TensorProto.FLOAT)]
    for k in (1, 2, 3):
        factor = helper.make_tensor(f"k{k}", TensorProto.FLOAT, [], [float(k)])
        nodes.append(helper.make_node("Constant", [], [f"k{k}"], name=f"k{k}", value=factor))
        nodes.append(helper.make_node("Mul", ["x", f"k{k}"], [f"t{k}"], name=f"t{k}"))
        at = ["zero"] if position and k == 3 else []
        nodes.append(
            helper.make_node("SequenceInsert", [f"seq_{k - 1}", f"t{k}", *at], [f"seq_{k}"], name=f"i{k}")
        )
    nodes.append(
        helper.make_node("ConcatFromSequence", ["seq_3"], ["y"], name="cat", axis=-1, new_axis=new_axis)
    )
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 3] if new_axis else [2, 9])],
        initializer=[helper.make_tensor("zero", TensorProto.INT64, [], [0])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("new_axis", [0, 1])
def test_a_list_built_by_appends_is_concatenated(tmp_path, new_axis):
    original = _load(_sequence_model(new_axis), tmp_path / "seq.onnx")
    model = _load(_sequence_model(new_axis), tmp_path / "stacked.onnx")
    assert _apply("stack-sequence", model, node="i1", op="SequenceInsert") is None
    normalize.tidy(model)
    assert not [n for n in model.graph if "Sequence" in n.op_type]
    x = _probe()["x"]
    (reference,) = oracle.evaluate(original, [{"x": x}]).outputs
    (outputs,) = oracle.evaluate(model, [{"x": x}]).outputs
    tensors = [x, 2 * x, 3 * x]
    np.testing.assert_array_equal(outputs["y"], reference["y"])
    np.testing.assert_array_equal(
        outputs["y"], np.stack(tensors, -1) if new_axis else np.concatenate(tensors, -1)
    )


def test_a_list_with_an_insert_in_the_middle_is_left_alone(tmp_path):
    model = _load(_sequence_model(1, position=True), tmp_path / "seq.onnx")
    reason = _apply("stack-sequence", model, node="i1", op="SequenceInsert")
    assert reason == "no ConcatFromSequence of a sequence built by appends with a known axis"


@pytest.mark.slow
def test_a_static_loop_converts_once_unrolled(target, tmp_path):
    path = save(_loop_model(_trips()), tmp_path / "loop.onnx")
    probe = _probe()
    expected = _expected(probe["x"])
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "loop" in plain.error.lower()

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["unroll-loop"]
    probe = _probe(1)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    for name, value in _expected(probe["x"]).items():
        np.testing.assert_allclose(outputs[name], value, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_a_static_scan_converts_once_unrolled(target, tmp_path):
    path = save(_scan_model(), tmp_path / "scan.onnx")
    rng = np.random.default_rng(2)
    probe = {
        "init": rng.standard_normal(2).astype(np.float32),
        "x": rng.standard_normal((2, 4)).astype(np.float32),
    }
    (expected,) = oracle.evaluate(_load(_scan_model(), tmp_path / "reference.onnx"), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert not plain.converted or any(
        not np.allclose(plain.tf_outputs[0][name], expected[name], atol=1e-4) for name in ("y", "s")
    )

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    assert "unroll-scan" in [s.rule for s in report.accepted_steps]
    fresh = {"init": np.ones(2, np.float32), "x": np.arange(8, dtype=np.float32).reshape(2, 4)}
    (want,) = oracle.evaluate(_load(_scan_model(), tmp_path / "fresh.onnx"), [fresh]).outputs
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    for name in ("y", "s"):
        np.testing.assert_allclose(outputs[name], want[name], rtol=1e-5, atol=1e-5)
