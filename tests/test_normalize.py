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
