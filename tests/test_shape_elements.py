"""Static elements of run-time shape tensors folded before the optimizer (shape_elements.py): a
LLaMA-style rotary half, `x.size(-1) // 2` read from a tensor with a dynamic batch and sequence."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import save
from onnx import TensorProto, helper, numpy_helper

import convfix
from convfix import RepairOptions, model_io, shape_elements


def _rotate_half(via_concat: bool) -> onnx.ModelProto:
    """y = cat(-x2, x1) over the last dim, its half read from the shape at run time."""
    measured = "dims"
    nodes = [helper.make_node("Shape", ["x"], ["dims"])]
    if via_concat:  # how shape-from-inputs writes a shape: slices of another Shape and constants
        nodes = [
            helper.make_node("Shape", ["x"], ["lead"], start=0, end=2),
            helper.make_node("Concat", ["lead", "sixteen"], ["spelled"], axis=0),
        ]
        measured = "spelled"
    nodes += [
        helper.make_node("Gather", [measured, "minus_one"], ["width"], axis=0),
        helper.make_node("Div", ["width", "two"], ["half"]),
        helper.make_node("Unsqueeze", ["half", "zero"], ["half_1d"]),
        helper.make_node("Slice", ["x", "zero", "half_1d", "last"], ["x1"]),
        helper.make_node("Slice", ["x", "half_1d", "big", "last"], ["x2"]),
        helper.make_node("Neg", ["x2"], ["negated"]),
        helper.make_node("Concat", ["negated", "x1"], ["y"], axis=-1),
    ]
    constants = {
        "sixteen": np.array([16], np.int64),
        "minus_one": np.array(-1, np.int64),
        "two": np.array(2, np.int64),
        "zero": np.array([0], np.int64),
        "last": np.array([-1], np.int64),
        "big": np.array([2**62], np.int64),
    }
    graph = helper.make_graph(
        nodes,
        "rotate_half",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "sequence", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "sequence", 16])],
        [numpy_helper.from_array(v, k) for k, v in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


def test_a_static_dim_read_at_a_scalar_index_becomes_a_constant(tmp_path):
    for via_concat in (False, True):
        model = model_io.load(save(_rotate_half(via_concat), tmp_path / f"m{via_concat}.onnx"))
        assert shape_elements.fold(model) == 1
        (width,) = (n for n in model.graph if n.name.endswith("_folded"))
        assert width.attributes["value"].value.numpy().tolist() == 16
        assert not [n for n in model.graph if n.op_type == "Gather"]


def test_a_dynamic_dim_is_left_to_run_time(tmp_path):
    model_proto = _rotate_half(via_concat=False)
    model_proto.graph.node[1].input[1] = "zero_scalar"
    model_proto.graph.initializer.append(numpy_helper.from_array(np.array(0, np.int64), "zero_scalar"))
    model = model_io.load(save(model_proto, tmp_path / "m.onnx"))
    assert shape_elements.fold(model) == 0


def test_the_rotary_half_converts_with_parity(target, tmp_path):
    path = save(_rotate_half(via_concat=True), tmp_path / "m.onnx")
    report = convfix.repair(path, RepairOptions(tf_out=tmp_path / "tf", tflite=True), backend=target)
    assert report.status in ("repaired", "clean"), report.to_json()
    assert report.tf.parity.ok and report.tf.tflite_parity.ok
