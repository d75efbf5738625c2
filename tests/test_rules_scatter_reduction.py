"""scatter-elements-reduction: ScatterElements with reduction add/mul/max/min, which onnx2tf refuses."""

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

RULE = next(r for r in discover().rules if r.name == "scatter-elements-reduction")
COMBINE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
# Duplicates and negative indices on axis 1 of data [2, 4]: -1 and 3 land on the same position.
INDICES = np.array([[0, -1, 3, 0, 1], [2, 2, -4, 1, 2]], np.int64)
FINDING = Finding("conversion-error", "", node="scatter", op="ScatterElements")


def _scatter(name: str, inputs: list[str], output: str, axis: int, reduction: str) -> onnx.NodeProto:
    return helper.make_node("ScatterElements", inputs, [output], name=name, axis=axis, reduction=reduction)


def _model(
    dtype: int, data_shape, index_shape, axis: int, reduction: str, opset: int = 18
) -> onnx.ModelProto:
    inputs = [
        helper.make_tensor_value_info("data", dtype, list(data_shape)),
        helper.make_tensor_value_info("indices", TensorProto.INT64, list(index_shape)),
        helper.make_tensor_value_info("updates", dtype, list(index_shape)),
    ]
    graph = helper.make_graph(
        [_scatter("scatter", ["data", "indices", "updates"], "y", axis, reduction)],
        "g",
        inputs,
        [helper.make_tensor_value_info("y", dtype, list(data_shape))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def _expected(data: np.ndarray, indices: np.ndarray, updates: np.ndarray, axis: int, reduction: str):
    """ONNX's loop: every update combined, in order, into the element its index names on the axis."""
    out = data.copy()
    axis = axis % data.ndim
    for where in np.ndindex(*indices.shape):
        target = list(where)
        target[axis] = indices[where] % data.shape[axis]
        out[tuple(target)] = COMBINE[reduction](out[tuple(target)], updates[where])
    return out


def _values(rng: np.random.Generator, dtype: np.dtype, shape) -> np.ndarray:
    """Small integers (also as floats): sums and products are exact in any order."""
    return rng.integers(-3, 4, size=shape).astype(dtype)


@pytest.mark.parametrize(
    ("dtype", "data_shape", "index_shape", "axis", "reduction", "opset"),
    [
        (np.float32, (4, 5), (6, 5), 0, "add", 18),
        (np.float32, (2, 3, 6), (2, 2, 4), -1, "max", 18),  # indices shorter on axis 1: padded
        (np.int32, (2, 6, 4), (1, 8, 4), 1, "min", 18),
        (np.float32, (2, 6, 4, 3), (2, 3, 4, 3), 1, "mul", 16),  # Reduce* take axes as attributes
        (np.int64, (3, 6), (3, 4), 1, "add", 16),
    ],
)
def test_the_rewrite_scatters_like_onnxruntime(
    tmp_path, dtype, data_shape, index_shape, axis, reduction, opset
):
    onnx_dtype = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    original = model_io.load(
        save(_model(onnx_dtype, data_shape, index_shape, axis, reduction, opset), tmp_path / "m.onnx")
    )
    model = normalize.normalize(model_io.clone(original))
    assert RULE.apply(model, FINDING, RuleContext()) is None
    assert "ScatterElements" not in {n.op_type for n in model.graph}
    rng = np.random.default_rng(0)
    length = data_shape[axis]
    probes = [
        {
            "data": _values(rng, dtype, data_shape),
            "indices": rng.integers(-length, length, size=index_shape),
            "updates": _values(rng, dtype, index_shape),
        }
        for _ in range(3)
    ]
    rewritten = oracle.evaluate(model, probes).outputs
    reference = oracle.evaluate(original, probes).outputs
    for probe, got, want in zip(probes, rewritten, reference, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])
        np.testing.assert_array_equal(got["y"], _expected(**probe, axis=axis, reduction=reduction))


def test_untouched_elements_keep_data_even_nan_and_inf(tmp_path):
    model = normalize.normalize(
        model_io.load(save(_model(TensorProto.FLOAT, (2, 4), (2, 2), 1, "max"), tmp_path / "m.onnx"))
    )
    assert RULE.apply(model, FINDING, RuleContext()) is None
    data = np.array([[np.nan, 1, np.inf, -np.inf], [5, np.nan, -np.inf, 0]], np.float32)
    probe = {"data": data, "indices": np.array([[1, 1], [0, 3]]), "updates": np.full((2, 2), 2, np.float32)}
    (outputs,) = oracle.evaluate(model, [probe]).outputs
    np.testing.assert_array_equal(outputs["y"], [[np.nan, 2, np.inf, -np.inf], [5, np.nan, -np.inf, 2]])


def test_a_shared_dynamic_batch_and_a_dynamic_axis_stay_dynamic(tmp_path):
    path = save(_model(TensorProto.FLOAT, ("n", 4), ("n", 5), 1, "add"), tmp_path / "batch.onnx")
    model = normalize.normalize(model_io.load(path))
    rng = np.random.default_rng(2)
    probes = [
        {
            "data": _values(rng, np.float32, (batch, 4)),
            "indices": rng.integers(-4, 4, size=(batch, 5)).astype(np.int64),
            "updates": _values(rng, np.float32, (batch, 5)),
        }
        for batch in (1, 3)
    ]
    expected = oracle.evaluate(model, probes).outputs
    assert RULE.apply(model, FINDING, RuleContext()) is None
    for want, got in zip(expected, oracle.evaluate(model, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])

    along = normalize.normalize(
        model_io.load(save(_model(TensorProto.FLOAT, (2, "m"), (2, "k"), 1, "max"), tmp_path / "axis.onnx"))
    )
    probes = [
        {
            "data": _values(rng, np.float32, (2, length)),
            "indices": rng.integers(-length, length, size=(2, 3)).astype(np.int64),
            "updates": _values(rng, np.float32, (2, 3)),
        }
        for length in (4, 7)
    ]
    expected = oracle.evaluate(along, probes).outputs
    assert RULE.apply(along, FINDING, RuleContext()) is None
    assert "ScatterElements" not in {n.op_type for n in along.graph}
    for want, got in zip(expected, oracle.evaluate(along, probes).outputs, strict=True):
        np.testing.assert_array_equal(got["y"], want["y"])


def _bincount_model() -> onnx.ModelProto:
    """torch.bincount as torch's exporter writes it: ones scatter-added into zeros of max(x) + 1."""
    nodes = [
        helper.make_node("ReduceMax", ["x"], ["top"], keepdims=1),
        helper.make_node("Add", ["top", "one"], ["length"]),
        helper.make_node(
            "ConstantOfShape",
            ["length"],
            ["zeros"],
            value=helper.make_tensor("v", TensorProto.INT64, [1], [0]),
        ),
        helper.make_node("Shape", ["x"], ["count"]),
        helper.make_node(
            "ConstantOfShape", ["count"], ["ones"], value=helper.make_tensor("v", TensorProto.INT64, [1], [1])
        ),
        _scatter("op", ["zeros", "x", "ones"], "y", 0, "add"),
    ]
    graph = helper.make_graph(
        nodes,
        "bincount",
        [helper.make_tensor_value_info("x", TensorProto.INT64, [6])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, ["bins"])],
        [helper.make_tensor("one", TensorProto.INT64, [1], [1])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


@pytest.mark.slow
def test_bincount_whose_length_is_its_inputs_max_converts_with_parity(target, tmp_path):
    path = save(_bincount_model(), tmp_path / "bincount.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status == "repaired", report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
    fresh = [np.array(v, np.int64) for v in ([0, 0, 3, 1, 3, 3], [9, 2, 2, 0, 5, 9])]
    for x, outputs in zip(fresh, target.run(tmp_path / "tf", [{"x": x} for x in fresh]), strict=True):
        np.testing.assert_array_equal(outputs["y"], np.bincount(x))


def _add_then_max_model() -> onnx.ModelProto:
    """scatter_add then scatter_reduce(amax) on data [2, 4] with constant indices holding duplicates."""
    nodes = [
        _scatter("scatter_add", ["data", "indices", "updates"], "summed", 1, "add"),
        _scatter("scatter_max", ["summed", "indices", "updates"], "y", 1, "max"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("updates", TensorProto.FLOAT, list(INDICES.shape)),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        initializer=[onnx.numpy_helper.from_array(INDICES, "indices")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


def _add_then_max(data: np.ndarray, updates: np.ndarray) -> np.ndarray:
    return _expected(_expected(data, INDICES, updates, 1, "add"), INDICES, updates, 1, "max")


def _float_probe(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        name: rng.normal(size=shape).astype(np.float32)
        for name, shape in (("data", (2, 4)), ("updates", (2, 5)))
    }


@pytest.mark.slow
def test_scatter_add_and_max_convert_once_rewritten(target, tmp_path):
    path = save(_add_then_max_model(), tmp_path / "scatter.onnx")
    rng = np.random.default_rng(0)
    probe = _float_probe(rng)
    plain = target.convert(path, tmp_path / "plain", [probe], [{}], rtol=1e-4, atol=1e-4)
    assert not plain.converted
    assert "ScatterElements currently supports only reduction=['none']" in plain.error

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target)
    assert report.status == "repaired", report.to_json()
    assert [s.rule for s in report.accepted_steps if s.rule != "simplify"] == ["scatter-elements-reduction"]
    probe = _float_probe(rng)
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_allclose(outputs["y"], _add_then_max(**probe), rtol=1e-6, atol=1e-6)


def _scatter_nd_model(reduction: str) -> onnx.ModelProto:
    """data [3, 2, 4]; 5 index pairs (duplicates, a negative one) address rows of 4."""
    node = helper.make_node(
        "ScatterND", ["data", "indices", "updates"], ["y"], name="scatter", reduction=reduction
    )
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [3, 2, 4]),
            helper.make_tensor_value_info("indices", TensorProto.INT64, [5, 2]),
            helper.make_tensor_value_info("updates", TensorProto.FLOAT, [5, 4]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 2, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)


@pytest.mark.parametrize("reduction", ["add", "mul", "max", "min"])
def test_scatter_nd_reduces_like_onnxruntime_once_both_rules_ran(tmp_path, reduction):
    path = save(_scatter_nd_model(reduction), tmp_path / "nd.onnx")
    rng = np.random.default_rng(3)
    probe = {
        "data": _values(rng, np.float32, (3, 2, 4)),
        "indices": np.array([[0, 1], [2, -1], [0, 1], [-3, 0], [2, 1]], np.int64),
        "updates": _values(rng, np.float32, (5, 4)),
    }
    model = normalize.normalize(model_io.load(path))
    (expected,) = oracle.evaluate(model, [probe]).outputs
    rules = {r.name: r for r in discover().rules}
    nd = Finding("divergence", "", node="scatter", op="ScatterND")
    assert rules["scatter-nd-reduction"].apply(model, nd, RuleContext()) is None
    normalize.tidy(model)
    assert [n.op_type for n in model.graph if n.op_type.startswith("Scatter")] == ["ScatterElements"]
    assert RULE.apply(model, FINDING, RuleContext()) is None
    (actual,) = oracle.evaluate(model, [probe]).outputs
    np.testing.assert_array_equal(actual["y"], expected["y"])


def test_a_scatter_nd_reduction_is_flagged_before_any_conversion(tmp_path):
    path = save(_scatter_nd_model("add"), tmp_path / "nd.onnx")
    found = [f for f in convfix.scan(path) if f.op == "ScatterND"]
    assert [f.kind for f in found] == ["divergence"]
    assert "ignores the reduction" in found[0].reason


@pytest.mark.slow
def test_scatter_nd_add_is_silently_wrong_plain_and_repaired(target, tmp_path):
    path = save(_scatter_nd_model("add"), tmp_path / "nd.onnx")
    rng = np.random.default_rng(5)
    probe = {
        "data": _values(rng, np.float32, (3, 2, 4)),
        "indices": np.array([[0, 1], [2, 1], [0, 1], [1, 0], [2, 1]], np.int64),
        "updates": _values(rng, np.float32, (5, 4)) + 10,
    }
    (expected,) = oracle.evaluate(model_io.load(path), [probe]).outputs
    plain = target.convert(path, tmp_path / "plain", [probe], [expected], rtol=1e-4, atol=1e-4)
    assert plain.converted
    assert not np.allclose(plain.tf_outputs[0]["y"], expected["y"])

    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf"), backend=target, probe_set=[probe])
    assert report.status == "repaired", report.to_json()
    accepted = [s.rule for s in report.accepted_steps]
    assert "scatter-nd-reduction" in accepted and "scatter-elements-reduction" in accepted
    (outputs,) = target.run(tmp_path / "tf", [probe])
    np.testing.assert_array_equal(outputs["y"], expected["y"])
