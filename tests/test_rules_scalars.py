"""scalars-kept-scalar: 0-D graph inputs, which onnx2tf turns into 1-D tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, normalize, oracle
from convfix.findings import Finding
from convfix.rules import RuleContext, discover

RULE = next(r for r in discover().rules if r.name == "scalars-kept-scalar")
RANGE_CASE = Path(onnx.__file__).parent / "backend/test/data/node/test_range_float_type_positive_delta"


def _range_model() -> onnx.ModelProto:
    """y = Range(0, n, 1) * 2 with n a 0-D input."""
    nodes = [
        helper.make_node("Range", ["zero", "n", "one"], ["r"], name="range"),
        helper.make_node("Mul", ["r", "two"], ["y"], name="double"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("n", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        [
            numpy_helper.from_array(np.array(v, np.float32), name)
            for name, v in (("zero", 0), ("one", 1), ("two", 2))
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_the_scalar_passes_through_an_identity_reduce(tmp_path):
    model = normalize.normalize(model_io.load(save(_range_model(), tmp_path / "m.onnx")))
    probes = [{"n": np.array(v, np.float32)} for v in (3.0, 7.5)]
    expected = oracle.evaluate(model, probes).outputs
    assert RULE.apply(model, Finding("conversion-error", "", node="range", op="Range"), RuleContext()) is None
    range_node = next(n for n in model.graph if n.op_type == "Range")
    assert range_node.inputs[1].producer().op_type == "ReduceMax"
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])
    again = RULE.apply(model, Finding("conversion-error", "", node="range", op="Range"), RuleContext())
    assert again is not None and "no scalar" in again  # what is wrapped is not wrapped twice
    assert [n.op_type for n in model.graph].count("ReduceMax") == 1


@pytest.mark.slow
def test_a_range_over_a_scalar_input_converts_once_kept_scalar(target, tmp_path):
    """The ONNX suite's own Range case: start, limit and delta are 0-D inputs."""
    path = RANGE_CASE / "model.onnx"
    inputs = {
        value.name: numpy_helper.to_array(
            onnx.load_tensor(str(RANGE_CASE / "test_data_set_0" / f"input_{i}.pb"))
        )
        for i, value in enumerate(onnx.load(path).graph.input)
    }
    plain = target.convert(path, tmp_path / "plain", [inputs], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted and "rank 0" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[inputs])
    assert report.status == "repaired", report.to_json()
    assert "scalars-kept-scalar" in [s.rule for s in report.accepted_steps]
    fresh = {
        "start": np.array(1.0, np.float32),
        "limit": np.array(4.0, np.float32),
        "delta": np.array(0.5, np.float32),
    }
    (outputs,) = target.run(tmp_path / "tf", [fresh])
    np.testing.assert_allclose(next(iter(outputs.values())), np.arange(1.0, 4.0, 0.5, dtype=np.float32))


def test_a_computed_range_bound_is_wrapped_too(tmp_path):
    """limit = Shape(x)[1] as a float, as AffineGrid's function body computes its Range bounds."""
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Gather", ["shape", "one_index"], ["length"], axis=0),
        helper.make_node("Cast", ["length"], ["limit"], to=TensorProto.FLOAT),
        helper.make_node("Range", ["zero", "limit", "one"], ["y"], name="range"),
    ]
    constants = [
        numpy_helper.from_array(np.array(1, np.int64), "one_index"),
        numpy_helper.from_array(np.array(0, np.float32), "zero"),
        numpy_helper.from_array(np.array(1, np.float32), "one"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, "n"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    loaded = normalize.normalize(model_io.load(save(model, tmp_path / "m.onnx")))
    probes = [{"x": np.zeros((2, n), np.float32)} for n in (3, 6)]
    expected = oracle.evaluate(loaded, probes).outputs
    assert (
        RULE.apply(loaded, Finding("conversion-error", "", node="range", op="Range"), RuleContext()) is None
    )
    range_node = next(n for n in loaded.graph if n.op_type == "Range")
    assert range_node.inputs[1].producer().op_type == "ReduceMax"
    assert range_node.inputs[0].producer() is None  # a constant bound stays as it is
    for want, got in zip(expected, oracle.evaluate(loaded, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])
