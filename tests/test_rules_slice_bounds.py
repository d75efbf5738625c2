"""slice-bounds-from-start: a Slice of a shape vector counting from the end, without axes, as
torch.export writes `x.shape[-2]`; onnx2tf slices it from 0 and a later Reshape loses its rank."""

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

RULE = next(r for r in discover().rules if r.name == "slice-bounds-from-start")
FINDING = Finding("conversion-error", "", node="transpose", op="Transpose")
INT64_MAX = np.iinfo(np.int64).max


def _const(name: str, values: list[int]) -> onnx.NodeProto:
    tensor = helper.make_tensor(name, TensorProto.INT64, [len(values)], values)
    return helper.make_node("Constant", [], [name], name=name, value=tensor)


def _model(starts=(-2,), ends=(-1,)) -> onnx.ModelProto:
    """(b, 2, s, 8) flattened to (b*2, s, 8), s taken from its own shape as sdpa does, then transposed."""
    nodes = [
        _const("starts", list(starts)),
        _const("ends", list(ends)),
        _const("minus_one", [-1]),
        _const("eight", [8]),
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Slice", ["shape", "starts", "ends"], ["seq"], name="slice"),
        helper.make_node("Concat", ["minus_one", "seq", "eight"], ["new_shape"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "new_shape"], ["flat"], name="reshape"),
        helper.make_node("Transpose", ["flat"], ["y"], name="transpose", perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 2, "s", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 8, "s"])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _probe(batch: int, seq: int, seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(batch, 2, seq, 8)).astype(np.float32)}


def _expected(x: np.ndarray) -> np.ndarray:
    return x.reshape(-1, x.shape[2], 8).transpose(0, 2, 1)


def _slice_inputs(model) -> list[list[int]]:
    (node,) = [n for n in model.graph if n.op_type == "Slice"]
    return [list(ir.convenience.get_const_tensor(v).numpy()) for v in node.inputs[1:]]


def test_the_bounds_become_non_negative_and_the_axes_explicit(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(), tmp_path / "m.onnx")))
    assert RULE.apply(model, FINDING, RuleContext()) is None
    assert _slice_inputs(model) == [[2], [3], [0]]
    probes = [_probe(b, s, seed) for seed, (b, s) in enumerate([(1, 1), (5, 5), (10, 10)])]
    for probe, outputs in zip(probes, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(outputs["y"], _expected(probe["x"]))


def _slice_model(x_shape: list, starts: list[int], ends: list[int]) -> onnx.ModelProto:
    """y = x[starts:ends] along the first axis, axes not given."""
    nodes = [
        _const("starts", starts),
        _const("ends", ends),
        helper.make_node("Slice", ["x", "starts", "ends"], ["y"], name="slice"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.INT64, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [None])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_bounds_beyond_the_dim_are_clamped_as_onnx_does(tmp_path):
    model = normalize.normalize(model_io.load(save(_slice_model([4], [-9], [-3]), tmp_path / "m.onnx")))
    assert RULE.apply(model, FINDING, RuleContext()) is None
    assert _slice_inputs(model) == [[0], [1], [0]]
    x = np.arange(4, dtype=np.int64)
    (outputs,) = oracle.evaluate(model, [{"x": x}]).outputs
    np.testing.assert_array_equal(outputs["y"], x[-9:-3])


def test_a_negative_bound_on_a_dynamic_dim_is_refused(tmp_path):
    model = normalize.normalize(model_io.load(save(_slice_model(["n"], [-2], [-1]), tmp_path / "m.onnx")))
    reason = RULE.apply(model, FINDING, RuleContext())
    assert reason is not None and "not static" in reason


@pytest.mark.slow
def test_a_shape_tail_counted_from_the_end_converts_once_rewritten(target, tmp_path):
    path = save(_model(), tmp_path / "tail.onnx")
    probes = [_probe(b, s, seed) for seed, (b, s) in enumerate([(1, 1), (5, 5), (10, 10)])]
    plain = target.convert(path, tmp_path / "plain", probes[:1], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted, plain

    assert any(f.kind == "divergence" and f.op == "Slice" for f in convfix.scan(path))
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=probes)
    assert report.status == "repaired", report.to_json()
    assert "slice-bounds-from-start" in [s.rule for s in report.accepted_steps]
    probe = _probe(3, 4, seed=7)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], _expected(probe["x"]))
