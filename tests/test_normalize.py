"""normalize: names made unique only when they are not already (NameFixPass costs on big graphs)."""

from __future__ import annotations

import onnx
import pytest
from conftest import save
from onnx import TensorProto, helper

from convfix import model_io, normalize


def _model(names: list[str], outputs: list[str]) -> onnx.ModelProto:
    """Two Relus in a row with the given node and output names."""
    nodes = [
        helper.make_node("Relu", ["x"], [outputs[0]], name=names[0]),
        helper.make_node("Relu", [outputs[0]], [outputs[1]], name=names[1]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info(outputs[1], TensorProto.FLOAT, [2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("names", [["a", ""], ["a", "a"]])
def test_missing_or_repeated_node_names_are_fixed(tmp_path, names):
    model = normalize.normalize(model_io.load(save(_model(names, ["h", "y"]), tmp_path / "m.onnx")))
    fixed = [node.name for node in model.graph]
    assert all(fixed) and len(set(fixed)) == 2


def test_unique_names_are_left_as_they_are(tmp_path):
    model = normalize.normalize(model_io.load(save(_model(["a", "b"], ["h", "y"]), tmp_path / "m.onnx")))
    assert [node.name for node in model.graph] == ["a", "b"]
    assert [node.outputs[0].name for node in model.graph] == ["h", "y"]


SHAPE_BOUNDS = [({"start": 1}, (1, 3)), ({"end": -1}, (0, 2)), ({"start": -9, "end": 9}, (0, 3))]


def _shapes_model() -> onnx.ModelProto:
    """Shapes of a [2, 3, 4] input with start or end alone, negative, or past the rank, and a Relu."""
    nodes = [helper.make_node("Relu", ["x"], ["r"])] + [
        helper.make_node("Shape", ["x"], [f"s{i}"], **bounds) for i, (bounds, _) in enumerate(SHAPE_BOUNDS)
    ]
    outputs = [helper.make_tensor_value_info("r", TensorProto.FLOAT, [2, 3, 4])] + [
        helper.make_tensor_value_info(f"s{i}", TensorProto.INT64, [end - start])
        for i, (_, (start, end)) in enumerate(SHAPE_BOUNDS)
    ]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])
    graph = helper.make_graph(nodes, "g", [x], outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)], ir_version=10)


def test_shape_bounds_are_written_out_as_onnx_means_them(tmp_path):
    model = normalize.normalize(model_io.load(save(_shapes_model(), tmp_path / "m.onnx")))
    shapes = [n for n in model.graph if n.op_type == "Shape"]
    written = [(n.attributes["start"].as_int(), n.attributes["end"].as_int()) for n in shapes]
    assert written == [bounds for _, bounds in SHAPE_BOUNDS]


@pytest.mark.slow
def test_shape_bounds_convert_with_parity(target, tmp_path):
    """onnx2tf returns the whole shape for a Shape with start alone: written out, TF and TFLite agree."""
    import convfix
    from convfix import RepairOptions

    options = RepairOptions(tf_out=tmp_path / "tf", tflite=True)
    report = convfix.repair(save(_shapes_model(), tmp_path / "m.onnx"), options, backend=target)
    assert report.status in ("repaired", "clean"), report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok


def test_two_flattens_of_one_tensor_fold_to_a_model_that_runs(tmp_path):
    """onnxscript's Flatten2Reshape names both new shapes `r/shape` and its rewriter keeps one; the
    other Reshape must still find its shape (LLaMA's TorchScript export has this pair)."""
    import numpy as np

    from convfix import engine, oracle
    from convfix.findings import Finding
    from convfix.rules import RuleContext

    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Flatten", ["r"], ["a"], axis=1),
        helper.make_node("Flatten", ["r"], ["b"], axis=2),
        helper.make_node("ReduceMax", ["a"], ["y"], axes=[1], keepdims=0),
        helper.make_node("ReduceMax", ["b"], ["z"], axes=[1], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n"]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["m"]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    model = normalize.normalize(model_io.load(save(proto, tmp_path / "m.onnx")))
    folded = model_io.clone(model)
    assert engine.SIMPLIFY.apply(folded, Finding("simplify", "fold"), RuleContext()) is None
    assert "Flatten" not in {n.op_type for n in folded.graph}
    probe = [{"x": np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32)}]
    (before,), (after,) = oracle.evaluate(model, probe).outputs, oracle.evaluate(folded, probe).outputs
    np.testing.assert_array_equal(before["y"], after["y"])
    np.testing.assert_array_equal(before["z"], after["z"])
