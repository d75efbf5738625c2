"""reduce-runtime-axes: Reduce* whose axes are a graph input, which onnx2tf cannot convert."""

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

RULE = next(r for r in discover().rules if r.name == "reduce-runtime-axes")
SHAPE = (3, 4, 4)  # two equal dims: a reduction over the wrong one of them has the right shape


def _model(op_type: str, keepdims: int, opset: int = 18, shape=SHAPE, n_axes: int = 1) -> onnx.ModelProto:
    node = helper.make_node(op_type, ["x", "axes"], ["y"], name="reduce", keepdims=keepdims)
    rank = len(shape) if keepdims else len(shape) - n_axes
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape)),
            helper.make_tensor_value_info("axes", TensorProto.INT64, [n_axes]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None] * rank)],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def _probe(axes: list[int], seed: int = 0) -> dict[str, np.ndarray]:
    x = np.random.default_rng(seed).uniform(0.5, 2.0, size=SHAPE).astype(np.float32)
    return {"x": x, "axes": np.array(axes, np.int64)}


NUMPY = {
    "ReduceSum": lambda x, a, k: x.sum(axis=a, keepdims=k),
    "ReduceMean": lambda x, a, k: x.mean(axis=a, keepdims=k),
    "ReduceMax": lambda x, a, k: x.max(axis=a, keepdims=k),
    "ReduceProd": lambda x, a, k: x.prod(axis=a, keepdims=k),
    "ReduceL2": lambda x, a, k: np.sqrt((x * x).sum(axis=a, keepdims=k)),
    "ReduceLogSumExp": lambda x, a, k: np.log(np.exp(x).sum(axis=a, keepdims=k)),
    "ReduceSumSquare": lambda x, a, k: (x * x).sum(axis=a, keepdims=k),
}


def _rewritten(tmp_path, model: onnx.ModelProto):
    rewritten = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    finding = Finding("unsupported-op", "", node="reduce", op=model.graph.node[0].op_type)
    assert RULE.apply(rewritten, finding, RuleContext()) is None
    normalize.tidy(rewritten)
    return rewritten


@pytest.mark.parametrize("op_type", sorted(NUMPY))
@pytest.mark.parametrize("keepdims", [0, 1])
def test_any_axes_value_reduces_like_numpy(tmp_path, op_type, keepdims):
    """One rewritten model, fed different axes at run time: the axes stay an input."""
    rewritten = _rewritten(tmp_path, _model(op_type, keepdims, n_axes=2))
    probes = [_probe(axes, seed) for seed, axes in enumerate([[0, 2], [-1, 1], [2, 0]])]
    for probe, outputs in zip(probes, oracle.evaluate(rewritten, probes).outputs, strict=True):
        axes = tuple(int(a) for a in probe["axes"])
        expected = NUMPY[op_type](probe["x"].astype(np.float64), axes, bool(keepdims))
        np.testing.assert_allclose(outputs["y"], expected, rtol=1e-5)


def test_reduce_sum_at_opset_13_takes_axes_as_input_too(tmp_path):
    rewritten = _rewritten(tmp_path, _model("ReduceSum", 1, opset=13))
    probe = _probe([1])
    (outputs,) = oracle.evaluate(rewritten, [probe]).outputs
    np.testing.assert_allclose(outputs["y"], probe["x"].sum(axis=1, keepdims=True), rtol=1e-6)


@pytest.mark.parametrize(
    ("op_type", "fill"), [("ReduceSum", 0.0), ("ReduceMax", -np.inf), ("ReduceProd", 1.0)]
)
def test_empty_data_gives_the_empty_set_value_in_the_shape_the_axes_give(tmp_path, op_type, fill):
    rewritten = _rewritten(tmp_path, _model(op_type, 1, shape=(2, 0, 4)))
    probes = [{"x": np.zeros((2, 0, 4), np.float32), "axes": np.array([a], np.int64)} for a in (1, 2)]
    over_empty, over_full = (o["y"] for o in oracle.evaluate(rewritten, probes).outputs)
    np.testing.assert_array_equal(over_empty, np.full((2, 1, 4), fill, np.float32))
    assert over_full.shape == (2, 0, 1)


def test_bool_max_is_any(tmp_path):
    model = _model("ReduceMax", 0, opset=20, shape=(4, 2))
    model.graph.input[0].type.tensor_type.elem_type = TensorProto.BOOL
    model.graph.output[0].type.tensor_type.elem_type = TensorProto.BOOL
    rewritten = _rewritten(tmp_path, model)
    x = np.array([[True, False], [False, False], [True, True], [False, True]])
    (outputs,) = oracle.evaluate(rewritten, [{"x": x, "axes": np.array([1], np.int64)}]).outputs
    np.testing.assert_array_equal(outputs["y"], x.any(axis=1))


@pytest.mark.parametrize(("noop", "expected"), [(0, lambda x: x.sum(keepdims=True)), (1, lambda x: x)])
def test_axes_known_to_be_empty(tmp_path, noop, expected):
    model = _model("ReduceSum", 1, n_axes=0)
    model.graph.node[0].attribute.append(helper.make_attribute("noop_with_empty_axes", noop))
    rewritten = _rewritten(tmp_path, model)
    probe = {"x": _probe([])["x"], "axes": np.zeros(0, np.int64)}
    (outputs,) = oracle.evaluate(rewritten, [probe]).outputs
    np.testing.assert_allclose(outputs["y"], expected(probe["x"]), rtol=1e-6)


def test_dynamic_data_is_refused(tmp_path):
    dynamic = _model("ReduceSum", 1, shape=("n", 4, 4))
    model = normalize.normalize(model_io.load(save(dynamic, tmp_path / "dyn.onnx")))
    reason = RULE.apply(model, Finding("unsupported-op", "", node="reduce", op="ReduceSum"), RuleContext())
    assert reason is not None and "not static" in reason


@pytest.mark.slow
def test_runtime_axes_convert_once_rewritten(target, tmp_path):
    path = save(_model("ReduceMean", 0), tmp_path / "reduce.onnx")
    plain = target.convert(path, tmp_path / "plain", [_probe([1])], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "__len__" in plain.error

    probes = [_probe([1], 0), _probe([2], 1)]
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "reduce-runtime-axes" in [s.rule for s in report.accepted_steps]
    fresh = _probe([2], 7)
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(outputs["y"], fresh["x"].mean(axis=2), rtol=1e-5)


def test_axes_computed_from_constants_alone_are_left_to_simplify(tmp_path):
    """Constant -> Unsqueeze axes (as an unrolled loop leaves them) fold before conversion."""
    nodes = [
        helper.make_node("Constant", [], ["one"], value=helper.make_tensor("v", TensorProto.INT64, [], [1])),
        helper.make_node("Unsqueeze", ["one", "zero"], ["axes"]),
        helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="reduce", keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(SHAPE))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1, 4])],
        [helper.make_tensor("zero", TensorProto.INT64, [1], [0])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    path = save(model, tmp_path / "folded.onnx")
    assert not [f for f in convfix.scan(path) if f.op == "ReduceSum"]
    runtime = save(_model("ReduceSum", 1), tmp_path / "runtime.onnx")
    assert [f.kind for f in convfix.scan(runtime) if f.op == "ReduceSum"] == ["unsupported-op"]


def _sum_over_sequence(op_type: str = "ReduceSum", keepdims: int = 0) -> onnx.ModelProto:
    """y = Reduce(einsum(x, w)) over the sequence: a rank-3 intermediate with dynamic batch and sequence
    (the zoo's einsum model; after a MatMul onnx2tf happens to get the axis right)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [8, 6], np.linspace(-1, 1, 48).tolist())
    nodes = [
        helper.make_node("Einsum", ["x", "w"], ["h"], name="project", equation="bsd,de->bse"),
        helper.make_node(op_type, ["h", "axes"], ["y"], name="reduce", keepdims=keepdims),
    ]
    out = ["batch", 1, 6] if keepdims else ["batch", 6]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [weight, helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


@pytest.mark.parametrize(("op_type", "keepdims"), [("ReduceSum", 0), ("ReduceSum", 1)])
def test_a_reduction_as_einsum_sums_the_same_dims(tmp_path, op_type, keepdims):
    einsum = next(r for r in discover().rules if r.name == "reduce-as-einsum")
    model = normalize.normalize(
        model_io.load(save(_sum_over_sequence(op_type, keepdims), tmp_path / "m.onnx"))
    )
    probes = [
        {"x": np.random.default_rng(s).normal(size=(b, q, 8)).astype(np.float32)}
        for s, (b, q) in enumerate([(2, 5), (3, 1)])
    ]
    expected = oracle.evaluate(model, probes).outputs
    assert einsum.apply(model, Finding("divergence", "", node="reduce", op=op_type), RuleContext()) is None
    normalize.tidy(model)
    assert "Einsum" in {n.op_type for n in model.graph}
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_allclose(got["y"], want["y"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_sum_over_a_dynamic_sequence_reduces_the_right_dim_once_an_einsum(target, tmp_path):
    path = save(_sum_over_sequence(), tmp_path / "seq.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert "reduce-as-einsum" in [s.rule for s in report.accepted_steps]
    x = np.random.default_rng(9).normal(size=(4, 7, 8)).astype(np.float32)
    (outputs,) = target.run(tmp_path / "tf", [{"x": x}])
    w = np.linspace(-1, 1, 48, dtype=np.float32).reshape(8, 6)
    np.testing.assert_allclose(outputs["y"], (x @ w).sum(axis=1), rtol=1e-4, atol=1e-5)
