"""slice-negative-step: a Slice with step -1 (torch.flip, x[::-1]), which onnx2tf converts unreversed."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import save
from convfix.rewrites.slice_steps import onnx_slice_indices
from onnx import TensorProto, helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "slice-negative-step")
INT64_MIN = int(np.iinfo(np.int64).min)


STRIDED = {"starts": [-1, 0], "ends": [INT64_MIN, 5], "axes": [1, -1], "steps": [-1, 2]}  # x[:, ::-1, ::2]
FLIP = {"starts": [-1], "ends": [INT64_MIN], "axes": [1], "steps": [-1]}  # x[:, ::-1], torch.flip(x, [1])


def _model(params: dict[str, list[int]]) -> onnx.ModelProto:
    """y = Slice(x) on x: [2, 4, 5] with constant parameters."""
    initializers = [helper.make_tensor(k, TensorProto.INT64, [len(v)], v) for k, v in params.items()]
    node = helper.make_node("Slice", ["x", *params], ["y"], name="flip")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 3 if len(params["axes"]) > 1 else 5])],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def _probe(seed: int = 0) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(seed).normal(size=(2, 4, 5)).astype(np.float32)}


def _expected(x: np.ndarray, params: dict[str, list[int]]) -> np.ndarray:
    return x[:, ::-1, 0:5:2] if params is STRIDED else x[:, ::-1]


@pytest.mark.parametrize(
    ("start", "end", "step"),
    [(-1, INT64_MIN, -1), (3, 0, -1), (-2, -5, -2), (10, -10, -3), (0, 4, 2), (-9, 9, 1)],
)
def test_indices_follow_onnx_slice(start, end, step):
    dim = 4
    bounded_end = None if end < -dim and step < 0 else end  # numpy reads -10 as "before 0" only via None
    assert onnx_slice_indices(start, end, step, dim) == list(np.arange(dim)[start:bounded_end:step])


@pytest.mark.parametrize("params", [STRIDED, FLIP])
def test_the_rewrite_gathers_the_same_elements(tmp_path, params):
    model = normalize.normalize(model_io.load(save(_model(params), tmp_path / "m.onnx")))
    assert RULE.apply(model, Finding("divergence", "", node="flip", op="Slice"), RuleContext()) is None
    assert "Gather" in {n.op_type for n in model.graph}
    probe = _probe()
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    np.testing.assert_array_equal(outputs["y"], _expected(probe["x"], params))


@pytest.mark.slow
def test_a_negative_step_is_a_silent_mismatch_plain_and_repaired_by_gather(target, tmp_path):
    path = save(_model(FLIP), tmp_path / "flip.onnx")
    probe = _probe()
    plain = target.convert(
        path, tmp_path / "plain", [probe], [{"y": _expected(probe["x"], FLIP)}], rtol=1e-4, atol=1e-4
    )
    assert plain.converted and plain.layout_problems, "plain onnx2tf should convert it, wrongly"

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert [f.kind for f in report.findings] == ["divergence"]
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["slice-negative-step"]
    probe = _probe(1)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], _expected(probe["x"], FLIP))
